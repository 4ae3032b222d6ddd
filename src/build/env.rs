//! The environment a RUN step sees: the image's variables, then the build's (args,
//! TARGET*/BUILD*, GO*) unless the image sets the same name (as Dockerfile ENV wins over
//! ARG), defaults for PATH and HOME, and QEMU_CPU for emulated ARM variants.

use crate::platform::Platform;
use crate::sandbox::init::DEFAULT_PATH;

/// The build's variables plus SOURCE_DATE_EPOCH (unless the recipe sets it as an arg),
/// so tools that honour it (py_compile, dpkg-deb, gzip users, man-db, useradd; see
/// reproducible-builds.org/specs/source-date-epoch) write the build's time, not now.
pub fn with_source_date_epoch(build_env: &[(String, String)], epoch: i64) -> Vec<(String, String)> {
    let mut env = build_env.to_vec();
    if !env.iter().any(|(k, _)| k == "SOURCE_DATE_EPOCH") {
        env.push(("SOURCE_DATE_EPOCH".into(), epoch.to_string()));
    }
    env
}

pub fn step_env(
    image_env: &[(String, String)],
    build_env: &[(String, String)],
    platform: &Platform,
    emulated: bool,
    home: &str,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = image_env.to_vec();
    let has = |env: &[(String, String)], k: &str| env.iter().any(|(n, _)| n == k);
    if !has(&env, "PATH") {
        env.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    for (k, v) in build_env {
        if !has(&env, k) {
            env.push((k.clone(), v.clone()));
        }
    }
    if !has(&env, "HOME") {
        env.push(("HOME".into(), home.into()));
    }
    if let Some(cpu) = platform
        .qemu_cpu()
        .filter(|_| emulated && !has(&env, "QEMU_CPU"))
    {
        env.push(("QEMU_CPU".into(), cpu.into()));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_see_the_build_epoch_unless_the_recipe_sets_it() {
        let env = with_source_date_epoch(&kv(&[("A", "1")]), 1_700_000_000);
        assert_eq!(env, kv(&[("A", "1"), ("SOURCE_DATE_EPOCH", "1700000000")]));
        let own = kv(&[("SOURCE_DATE_EPOCH", "5")]);
        assert_eq!(with_source_date_epoch(&own, 9), own);
    }

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn image_env_wins_and_defaults_fill_in() {
        let arm6: Platform = "arm/v6".parse().unwrap();
        let env = step_env(
            &kv(&[("VERSION", "from-env")]),
            &kv(&[("TARGETARCH", "arm"), ("VERSION", "from-arg")]),
            &arm6,
            true,
            "/root",
        );
        assert_eq!(
            env,
            kv(&[
                ("VERSION", "from-env"),
                ("PATH", DEFAULT_PATH),
                ("TARGETARCH", "arm"),
                ("HOME", "/root"),
                ("QEMU_CPU", "arm1176"),
            ])
        );
        let native = step_env(&kv(&[("PATH", "/bin")]), &[], &arm6, false, "/");
        assert_eq!(native, kv(&[("PATH", "/bin"), ("HOME", "/")]));
    }
}
