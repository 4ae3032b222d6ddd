//! The variables xbake sets for every platform: BuildKit's TARGET* and BUILD*, and Go's
//! GOOS/GOARCH/GOARM for cross-compiling steps.

use crate::platform::Platform;

const TARGET_NAMES: [&str; 4] = ["TARGETPLATFORM", "TARGETOS", "TARGETARCH", "TARGETVARIANT"];
const BUILD_NAMES: [&str; 4] = ["BUILDPLATFORM", "BUILDOS", "BUILDARCH", "BUILDVARIANT"];
const GO_NAMES: [&str; 3] = ["GOOS", "GOARCH", "GOARM"];

/// Names xbake sets for every platform; a build arg may not take them over, or one
/// recipe could claim to build for arm64 while the steps run as arm.
pub(super) fn is_reserved_name(name: &str) -> bool {
    TARGET_NAMES
        .iter()
        .chain(&BUILD_NAMES)
        .chain(&GO_NAMES)
        .any(|reserved| *reserved == name)
}

/// TARGET* then BUILD*, BuildKit's names and order.
pub(super) fn platform_vars(target: &Platform, build: &Platform) -> Vec<(String, String)> {
    let target_vars = target
        .target_vars()
        .map(|(name, value)| (name.to_string(), value));
    let build_vars = BUILD_NAMES
        .iter()
        .zip(build.target_vars())
        .map(|(name, (_, value))| (name.to_string(), value));
    target_vars.into_iter().chain(build_vars).collect()
}

/// What RUN steps get besides the image's env, in `Plan::build_env`'s fixed order: the
/// platform variables, Go's (GOARM only where Go reads it, 32-bit ARM), the build args.
pub(super) fn build_env(
    target: &Platform,
    platform_vars: &[(String, String)],
    args: &[(String, String)],
) -> Vec<(String, String)> {
    let mut env = platform_vars.to_vec();
    env.push(("GOOS".into(), target.os().into()));
    env.push(("GOARCH".into(), target.goarch().into()));
    if !target.goarm().is_empty() {
        env.push(("GOARM".into(), target.goarm().into()));
    }
    env.extend(args.iter().cloned());
    env
}
