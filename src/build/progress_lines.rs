//! The text of plain progress's phase lines: unpacking, waiting for a job slot,
//! committing a layer, writing the output, and the closing summary. Pure: every
//! figure, elapsed times included, is passed in, so each line is tested as a string
//! without running (or timing) a build.

use super::timefmt::elapsed;
use crate::layer::error::rounded_size;
use std::time::Duration;

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `1234567` → `1,234,567`: entry counts read at a glance.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `base: unpacked 3 layers, 4.2 MiB in 0.31 s`. `what` names the tree: `base` for a
/// stage's own rootfs, else the stage or image a step reads (`image oci:…`).
/// With the overlay backend, `from_store` more layers were unpacked already (by any
/// earlier build) and only mounted.
pub fn unpacked(
    what: &str,
    layers: usize,
    bytes: u64,
    from_store: usize,
    took: Duration,
) -> String {
    let reused = match from_store {
        0 => String::new(),
        n => format!(
            "{}{} from the snapshot store",
            if layers == 0 { "" } else { "; " },
            plural(n, "layer", "layers")
        ),
    };
    if layers == 0 && from_store > 0 {
        return format!("{what}: {reused}, mounted in {}", elapsed(took));
    }
    format!(
        "{what}: unpacked {}, {} in {}{reused}",
        plural(layers, "layer", "layers"),
        rounded_size(bytes),
        elapsed(took)
    )
}

/// `base: rootfs:bases/busybox.tar.gz, 1 layer, 1.0 MiB, ready in 0.05 s`: the base read
/// (imported, pulled, or found in the cache) before any stage build starts; the size is
/// its blobs'.
pub fn base_resolved(text: &str, layers: usize, bytes: u64, took: Duration) -> String {
    format!(
        "base: {text}, {}, {}, ready in {}",
        plural(layers, "layer", "layers"),
        rounded_size(bytes),
        elapsed(took)
    )
}

/// A stage whose every step came from the cache never unpacks its base.
pub fn base_reused(layers: usize) -> String {
    format!(
        "base: reused, nothing unpacked ({}; every step came from the cache)",
        plural(layers, "layer", "layers")
    )
}

/// `queued: 2 of 2 slots busy`: a stage build ready to start, waiting for `--jobs`.
pub fn queued(busy: usize, slots: usize) -> String {
    format!("queued: {busy} of {} busy", plural(slots, "slot", "slots"))
}

pub fn started_after(waited: Duration) -> String {
    format!("started after {} in the queue", elapsed(waited))
}

/// What a committed step added.
pub struct CommittedLayer<'a> {
    /// Compressed size: what the blob takes in the store and the output.
    pub size: u64,
    /// `gzip`, `zstd`, `uncompressed`.
    pub compression: &'a str,
    pub entries: u64,
}

/// `step 3/5 committed: layer 1.2 MiB (gzip), 1,234 entries in 0.20 s`.
pub fn committed(
    number: usize,
    total: usize,
    layer: Option<&CommittedLayer>,
    took: Duration,
) -> String {
    match layer {
        Some(l) => format!(
            "step {number}/{total} committed: layer {} ({}), {} {} in {}",
            rounded_size(l.size),
            l.compression,
            grouped(l.entries),
            if l.entries == 1 { "entry" } else { "entries" },
            elapsed(took)
        ),
        None => format!(
            "step {number}/{total} committed: no changes, no layer in {}",
            elapsed(took)
        ),
    }
}

/// The compression a layer media type names, for the committed line.
pub fn compression_of(media_type: &str) -> &'static str {
    crate::image::checks::declared_compression(media_type)
        .unwrap_or(crate::layer::Compression::None)
        .name()
}

/// `output: wrote oci:out/app:latest (3 manifests, 12.3 MiB new blobs) in 0.80 s`.
/// New blobs are those the destination did not hold already.
pub fn output_written(dest: &str, manifests: usize, new_bytes: u64, took: Duration) -> String {
    let blobs = match new_bytes {
        0 => "no new blobs".to_string(),
        n => format!("{} new blobs", rounded_size(n)),
    };
    format!(
        "output: wrote {dest} ({}, {blobs}) in {}",
        plural(manifests, "manifest", "manifests"),
        elapsed(took)
    )
}

/// The build's scratch folder (every stage's unpacked rootfs) removed.
pub fn cleaned_up(took: Duration) -> String {
    format!(
        "cleanup: removed the build's unpacked trees in {}",
        elapsed(took)
    )
}

/// One stage build's share of the summary.
pub struct NodeTime<'a> {
    pub label: &'a str,
    pub took: Duration,
    /// How long it waited for a job slot, when it had to.
    pub queued: Option<Duration>,
}

/// The closing lines: the build's total, the setup before any stage build, each stage
/// build in graph order, then the phases after them (`output`, `push`).
pub fn summary(
    total: Duration,
    setup: Duration,
    nodes: &[NodeTime],
    after: &[(&str, Duration)],
) -> Vec<String> {
    let mut lines = vec![format!("summary: built in {}", elapsed(total))];
    lines.push(format!("  setup (emulation, bases): {}", elapsed(setup)));
    for n in nodes {
        let mut line = format!("  [{}] {}", n.label, elapsed(n.took));
        if let Some(q) = n.queued {
            line.push_str(&format!(", after {} in the queue", elapsed(q)));
        }
        lines.push(line);
    }
    for (phase, took) in after {
        lines.push(format!("  {phase}: {}", elapsed(*took)));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn entry_counts_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1_000), "1,000");
        assert_eq!(grouped(1_234_567), "1,234,567");
    }

    #[test]
    fn unpacking_and_reuse_lines() {
        assert_eq!(
            unpacked("base", 3, 4_404_019, 0, ms(312)),
            "base: unpacked 3 layers, 4.2 MiB in 0.31 s"
        );
        assert_eq!(
            unpacked("image oci:bases/x", 1, 512, 0, ms(6)),
            "image oci:bases/x: unpacked 1 layer, 512 bytes in 0.01 s"
        );
        assert_eq!(
            unpacked("cached layers", 1, 2048, 2, ms(40)),
            "cached layers: unpacked 1 layer, 2 KiB in 0.04 s; 2 layers from the snapshot store"
        );
        assert_eq!(
            unpacked("base", 0, 0, 1, ms(3)),
            "base: 1 layer from the snapshot store, mounted in 0.00 s"
        );
        assert_eq!(
            base_resolved("rootfs:bases/busybox-arm64.tar.gz", 1, 1_048_576, ms(52)),
            "base: rootfs:bases/busybox-arm64.tar.gz, 1 layer, 1 MiB, ready in 0.05 s"
        );
        assert_eq!(
            base_reused(1),
            "base: reused, nothing unpacked (1 layer; every step came from the cache)"
        );
    }

    #[test]
    fn queue_lines() {
        assert_eq!(queued(2, 2), "queued: 2 of 2 slots busy");
        assert_eq!(queued(1, 1), "queued: 1 of 1 slot busy");
        assert_eq!(
            started_after(ms(12_340)),
            "started after 12.3 s in the queue"
        );
    }

    #[test]
    fn committed_lines_name_size_compression_and_entries() {
        let layer = CommittedLayer {
            size: 1_258_291,
            compression: compression_of("application/vnd.oci.image.layer.v1.tar+gzip"),
            entries: 1_234,
        };
        assert_eq!(
            committed(3, 5, Some(&layer), ms(200)),
            "step 3/5 committed: layer 1.2 MiB (gzip), 1,234 entries in 0.20 s"
        );
        let one = CommittedLayer {
            size: 130,
            compression: compression_of("application/vnd.oci.image.layer.v1.tar+zstd"),
            entries: 1,
        };
        assert_eq!(
            committed(1, 1, Some(&one), ms(4)),
            "step 1/1 committed: layer 130 bytes (zstd), 1 entry in 0.00 s"
        );
        assert_eq!(
            committed(2, 4, None, ms(31)),
            "step 2/4 committed: no changes, no layer in 0.03 s"
        );
        assert_eq!(
            compression_of("application/vnd.oci.image.layer.v1.tar"),
            "uncompressed"
        );
    }

    #[test]
    fn output_line() {
        assert_eq!(
            output_written("oci:out/app:latest", 3, 12_897_484, ms(800)),
            "output: wrote oci:out/app:latest (3 manifests, 12.3 MiB new blobs) in 0.80 s"
        );
        assert_eq!(
            output_written("oci-archive:a.tar:1", 1, 0, ms(20)),
            "output: wrote oci-archive:a.tar:1 (1 manifest, no new blobs) in 0.02 s"
        );
    }

    #[test]
    fn cleanup_line() {
        assert_eq!(
            cleaned_up(ms(4_620)),
            "cleanup: removed the build's unpacked trees in 4.62 s"
        );
    }

    #[test]
    fn summary_lists_every_stage_build_and_its_wait() {
        let nodes = [
            NodeTime {
                label: "amd64",
                took: ms(3_100),
                queued: None,
            },
            NodeTime {
                label: "build@amd64→arm64",
                took: ms(9_800),
                queued: Some(ms(3_100)),
            },
        ];
        assert_eq!(
            summary(
                ms(14_210),
                ms(400),
                &nodes,
                &[("output", ms(120)), ("push", ms(2_500))]
            ),
            [
                "summary: built in 14.2 s",
                "  setup (emulation, bases): 0.40 s",
                "  [amd64] 3.10 s",
                "  [build@amd64→arm64] 9.80 s, after 3.10 s in the queue",
                "  output: 0.12 s",
                "  push: 2.50 s",
            ]
        );
        assert_eq!(
            summary(ms(1_000), ms(10), &[], &[]),
            [
                "summary: built in 1.00 s",
                "  setup (emulation, bases): 0.01 s"
            ]
        );
    }
}
