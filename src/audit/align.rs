//! Aligning two images' layer lists by content rather than by position, so that one
//! extra or missing step does not shift every later comparison.
//!
//! The anchors are a longest common subsequence of the two key lists (layers with the
//! same content, wherever they sit); between two anchors the remaining layers are
//! paired by position, and what is left over on one side is extra there. This is the
//! classic LCS alignment diff(1) is built on (Hunt–McIlroy); layer lists are short
//! (tens, rarely hundreds), so the O(n·m) table is cheap and gives the optimal anchors,
//! duplicates (several empty layers) included, which patience diff would skip.

/// How one position of the alignment relates the two lists (0-based indexes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aligned {
    /// The same key on both sides: an anchor.
    Same(usize, usize),
    /// Different keys between the same anchors, at the same relative position.
    Paired(usize, usize),
    /// Only in the first list (missing from the second).
    OnlyA(usize),
    /// Only in the second list (extra there).
    OnlyB(usize),
}

/// Every index of `a` and of `b` appears exactly once, in order on each side.
pub fn align<K: PartialEq>(a: &[K], b: &[K]) -> Vec<Aligned> {
    let (n, m) = (a.len(), b.len());
    // lcs[i][j]: length of the LCS of a[i..] and b[j..].
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut anchors = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n && j < m {
        if a[i] == b[j] && lcs[i][j] == lcs[i + 1][j + 1] + 1 {
            anchors.push((i, j));
            i += 1;
            j += 1;
        } else if lcs[i + 1][j] >= lcs[i][j + 1] {
            i += 1;
        } else {
            j += 1;
        }
    }
    let mut out = Vec::with_capacity(n.max(m));
    let (mut i, mut j) = (0, 0);
    for (ai, bj) in anchors.into_iter().chain(std::iter::once((n, m))) {
        // The gap before this anchor: pair by position, the rest is one-sided.
        while i < ai && j < bj {
            out.push(Aligned::Paired(i, j));
            i += 1;
            j += 1;
        }
        out.extend((i..ai).map(Aligned::OnlyA));
        out.extend((j..bj).map(Aligned::OnlyB));
        if ai < n {
            out.push(Aligned::Same(ai, bj));
        }
        (i, j) = (ai + 1, bj + 1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::Aligned::*;
    use super::*;

    #[test]
    fn identical_lists_are_all_anchors() {
        assert_eq!(
            align(&[1, 2, 3], &[1, 2, 3]),
            [Same(0, 0), Same(1, 1), Same(2, 2)]
        );
    }

    #[test]
    fn an_inserted_layer_does_not_shift_the_ones_after_it() {
        assert_eq!(
            align(&["base", "a", "b", "c"], &["base", "a", "new", "b", "c"]),
            [Same(0, 0), Same(1, 1), OnlyB(2), Same(2, 3), Same(3, 4)]
        );
        assert_eq!(
            align(&["base", "a", "new", "b"], &["base", "a", "b"]),
            [Same(0, 0), Same(1, 1), OnlyA(2), Same(3, 2)]
        );
    }

    #[test]
    fn differing_layers_between_anchors_pair_by_position() {
        // Layer 2 changed and a layer was added after it: the change is compared with its
        // counterpart, the addition reported alone.
        assert_eq!(
            align(&["base", "x1", "top"], &["base", "x2", "y", "top"]),
            [Same(0, 0), Paired(1, 1), OnlyB(2), Same(2, 3)]
        );
        // Nothing in common: position by position, as before alignment.
        assert_eq!(
            align(&[1, 2], &[3, 4, 5]),
            [Paired(0, 0), Paired(1, 1), OnlyB(2)]
        );
    }

    #[test]
    fn duplicate_keys_and_empty_lists() {
        // Two identical empty layers, one of them removed.
        assert_eq!(
            align(&["e", "a", "e"], &["e", "a"]),
            [Same(0, 0), Same(1, 1), OnlyA(2)]
        );
        assert_eq!(align::<u8>(&[], &[1]), [OnlyB(0)]);
        assert_eq!(align::<u8>(&[1], &[]), [OnlyA(0)]);
        assert!(align::<u8>(&[], &[]).is_empty());
    }
}
