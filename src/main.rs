use std::path::PathBuf;
fn main() {
    if let Err(e) = xbake::sandbox::hidden_entry() { eprintln!("{e}"); std::process::exit(1) }
    if !xbake::sandbox::userns::inside_build_namespace() {
        let args: Vec<_> = std::env::args_os().skip(1).collect();
        let plan = xbake::sandbox::userns::current_plan();
        eprintln!("plan {plan:?}");
        let st = xbake::sandbox::userns::run_in_build_namespace(&args, &plan).unwrap();
        std::process::exit(st.code().unwrap_or(1));
    }
    let p: xbake::platform::Platform = "arm64".parse().unwrap();
    let em = xbake::emulation::required_emulators(&[p], &xbake::platform::Platform::host(), &xbake::emulation::qemu::search_path()).unwrap();
    let d = tempfile::tempdir().unwrap();
    let act = xbake::emulation::activate(&em, d.path(), std::path::Path::new("/proc/sys/fs/binfmt_misc"), false).unwrap();
    eprintln!("act {act:?}");
    let spec = xbake::sandbox::StepSpec { rootfs: PathBuf::from("/tmp/rfx/arm64"), argv: vec!["/bin/sh".into(), "-c".into(), std::env::args().nth(1).unwrap()], env: vec![("PATH".into(), "/bin".into())], cwd: "/".into(), uid: 0, gid: 0, network: xbake::sandbox::NetworkMode::None, hostname: "xbake".into(), hosts_file: "/tmp/rfx/hosts".into(), hostname_file: "/tmp/rfx/hostname".into(), resolv_conf: Some("/etc/resolv.conf".into()), emulator_bind: None, linux32: false };
    let r = xbake::sandbox::run_step(&spec, &mut |l| println!("| {l}"));
    eprintln!("{r:?}");
}
