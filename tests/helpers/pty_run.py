#!/usr/bin/env python3
"""Runs a command with a fresh pseudo-terminal as its controlling terminal (its own
session, as a login shell would have), the way a user runs xbake from a terminal.
Prints what the command wrote to the terminal, then `PENDING_INPUT=N`: how many bytes
sit in the terminal's input queue afterwards, i.e. what a TIOCSTI injection would have
handed to the shell that reads this terminal next. Exits with the command's status."""
import fcntl
import os
import pty
import select
import struct
import sys
import termios

master, slave = pty.openpty()
pid = os.fork()
if pid == 0:
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    os.close(master)
    os.close(slave)
    os.execvp(sys.argv[1], sys.argv[1:])

output = b""
status = None
while True:
    ready, _, _ = select.select([master], [], [], 0.1)
    if master in ready:
        try:
            data = os.read(master, 65536)
        except OSError:
            data = b""
        output += data
    if status is None:
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            status = st
    if status is not None and master not in ready:
        break
pending = struct.unpack("i", fcntl.ioctl(slave, termios.FIONREAD, b"\0\0\0\0"))[0]
sys.stdout.write(output.decode("utf-8", "replace"))
sys.stdout.write(f"\nPENDING_INPUT={pending}\n")
sys.exit(os.waitstatus_to_exitcode(status))
