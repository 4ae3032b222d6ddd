#!/usr/bin/perl
# Runs CMD as uid 0 of a fresh user namespace whose ids 0..COUNT-1 are the host's
# FIRST..FIRST+COUNT-1, for scripts/fixtures.sh (run as root). Why not unshare(1):
# `unshare --map-users` goes through newuidmap, which wants an /etc/subuid entry for
# root that Debian does not create; and a plain `unshare --user` execs before the
# parent can write the maps, so the command starts without capabilities. Here the
# child unshares, waits for the parent (real root) to write uid_map/gid_map
# (user_namespaces(7): "Defining user and group ID mappings"), then setuid(0)s and execs.
# The namespace gets its own binfmt_misc instance (Linux >= 6.7), so the host's is
# never touched.
use strict; use warnings; use POSIX ();
my ($first, $count, @cmd) = @ARGV;
die "usage: userns-root.pl FIRST COUNT CMD...\n" unless defined $count && @cmd;
my $CLONE_NEWUSER = 0x10000000;
my $SYS_unshare = 272;   # x86_64; the fixture script only runs on amd64 hosts
pipe(my $from_child, my $to_parent) or die "pipe: $!";
pipe(my $from_parent, my $to_child) or die "pipe: $!";
my $pid = fork() // die "fork: $!";
if ($pid == 0) {
  close $from_child; close $to_child;
  syscall($SYS_unshare, $CLONE_NEWUSER) == 0 or die "unshare(CLONE_NEWUSER): $!\n";
  syswrite $to_parent, "u"; close $to_parent;
  sysread($from_parent, my $go, 1) or die "userns-root: the parent could not write the id maps\n";
  POSIX::setgid(0) or die "setgid(0): $!\n";
  POSIX::setuid(0) or die "setuid(0): $!\n";
  exec @cmd or die "exec $cmd[0]: $!\n";
}
close $to_parent; close $from_parent;
sysread($from_child, my $ready, 1) or die "userns-root: the child could not unshare\n";
for my $map ("uid_map", "gid_map") {
  open my $fh, '>', "/proc/$pid/$map" or die "/proc/$pid/$map: $!\n";
  print $fh "0 $first $count\n";
  close $fh or die "/proc/$pid/$map: $!\n";
}
syswrite $to_child, "g"; close $to_child;
waitpid($pid, 0);
exit($? >> 8);
