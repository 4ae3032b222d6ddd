//! The 32-bit personality for i386 steps on an amd64 kernel, as `setarch linux32` (and
//! Docker on amd64 for linux/386) does, so `uname -m` reports i686.

use std::io;

const PER_LINUX32: libc::c_ulong = 0x0008;

pub fn set_linux32() -> io::Result<()> {
    // SAFETY: personality(2) takes a plain integer and only changes this process's
    // execution domain; 0xffffffff would only query it.
    let previous = unsafe { libc::personality(PER_LINUX32) };
    if previous < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
