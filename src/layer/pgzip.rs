//! Gzip on every core, with bytes that depend on the data and the level only (pigz's
//! scheme). The input is cut into fixed [`BLOCK`]-byte blocks; each is compressed on its
//! own as raw deflate, primed with the 32 KiB of input before it as a preset dictionary
//! (so matches still reach back across the cut, and the ratio stays within a fraction of
//! a percent of serial gzip), and ended with a sync flush, which byte-aligns it so the
//! pieces can be concatenated. The input left at the end (possibly none) is the final
//! deflate block. One gzip header and trailer (CRC-32 and length of the whole input)
//! wrap the concatenation.
//!
//! A block's bytes are a function of (previous 32 KiB, block, level) alone, so whether
//! one thread compresses them all or eight share them, the stream is the same: the
//! thread count is a speed knob, never part of a layer's identity.

use flate2::{Compress, Crc, FlushCompress, Status};
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Input bytes per block; part of the output format (a different size gives different
/// bytes), so a constant, never derived from the machine.
pub const BLOCK: usize = 128 * 1024;
/// Deflate's window: the most a match can reach back, so the most a dictionary needs.
const WINDOW: usize = 32 * 1024;
/// Blocks queued or being compressed per worker: bounds memory to about
/// `threads * IN_FLIGHT_PER_THREAD * BLOCK` of input plus its output.
const IN_FLIGHT_PER_THREAD: usize = 2;
/// RFC 1952 OS byte 255, "unknown": the byte must not depend on the build host.
const OS_UNKNOWN: u8 = 255;

/// A gzip writer compressing on `threads` threads (1: on the caller's thread only).
/// Call [`ParallelGzip::finish`]; dropping it leaves the stream unterminated.
pub struct ParallelGzip<W: Write> {
    inner: W,
    level: u32,
    threads: usize,
    header_written: bool,
    /// The block being filled.
    block: Vec<u8>,
    /// The previous block, whose tail primes the next one.
    previous: Option<Arc<Vec<u8>>>,
    crc: Crc,
    len: u64,
    /// Compresses inline until a second thread is worth it (and when `threads` is 1).
    serial: Option<BlockCompressor>,
    pool: Option<Pool>,
}

impl<W: Write> ParallelGzip<W> {
    /// `level` 0-9 (deflate's levels); `threads` at least 1 (0 is taken as 1).
    pub fn new(inner: W, level: u32, threads: usize) -> Self {
        ParallelGzip {
            inner,
            level,
            threads: threads.max(1),
            header_written: false,
            block: Vec::with_capacity(BLOCK),
            previous: None,
            crc: Crc::new(),
            len: 0,
            serial: None,
            pool: None,
        }
    }

    /// Compresses the rest, writes the trailer and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.write_header()?;
        let last = std::mem::take(&mut self.block);
        self.submit(last, true)?;
        if let Some(pool) = self.pool.as_mut() {
            while pool.written < pool.submitted {
                let (data, crc) = pool.next_in_order()?;
                self.inner.write_all(&data)?;
                self.crc.combine(&crc);
            }
        }
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&self.crc.sum().to_le_bytes());
        // ISIZE is the input length modulo 2^32 (RFC 1952).
        trailer[4..].copy_from_slice(&(self.len as u32).to_le_bytes());
        self.inner.write_all(&trailer)?;
        // Move the writer out; the pool (if any) is dropped, which stops its threads.
        let ParallelGzip { inner, .. } = self;
        Ok(inner)
    }

    /// Fixed header: no name, no comment, mtime 0, XFL as gzip sets it for the level.
    fn write_header(&mut self) -> io::Result<()> {
        if self.header_written {
            return Ok(());
        }
        let xfl = match self.level {
            9 => 2,
            1 => 4,
            _ => 0,
        };
        self.inner
            .write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, OS_UNKNOWN])?;
        self.header_written = true;
        Ok(())
    }

    fn submit(&mut self, block: Vec<u8>, last: bool) -> io::Result<()> {
        let block = Arc::new(block);
        let previous = self.previous.replace(Arc::clone(&block));
        // The first block is done inline: a small layer never starts a thread.
        if self.threads > 1 && self.pool.is_none() && previous.is_some() {
            self.pool = Pool::start(self.threads, self.level);
            if self.pool.is_none() {
                // No thread could be started: inline from now on, to the same bytes.
                self.threads = 1;
            }
        }
        match self.pool.as_mut() {
            Some(pool) => {
                while pool.submitted - pool.written >= pool.capacity {
                    let (data, crc) = pool.next_in_order()?;
                    self.inner.write_all(&data)?;
                    self.crc.combine(&crc);
                }
                pool.send(Job {
                    previous,
                    block,
                    last,
                })
            }
            None => {
                let level = self.level;
                let compressor = self
                    .serial
                    .get_or_insert_with(|| BlockCompressor::new(level));
                let (data, crc) = compressor.compress(previous.as_deref(), &block, last)?;
                self.inner.write_all(&data)?;
                self.crc.combine(&crc);
                Ok(())
            }
        }
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_header()?;
        let n = (BLOCK - self.block.len()).min(buf.len());
        self.block.extend_from_slice(&buf[..n]);
        self.len += n as u64;
        if self.block.len() == BLOCK {
            let full = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK));
            self.submit(full, false)?;
        }
        Ok(n)
    }

    /// Deliberately does nothing: a flush would cut a block short and change the bytes.
    /// The stream is complete after [`ParallelGzip::finish`].
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Compresses blocks at one level.
struct BlockCompressor {
    level: u32,
}

impl BlockCompressor {
    fn new(level: u32) -> Self {
        BlockCompressor { level }
    }

    /// The raw deflate bytes of `block` primed with the tail of `previous`, sync-flushed
    /// (or finished if `last`), and the block's CRC-32.
    fn compress(
        &self,
        previous: Option<&Vec<u8>>,
        block: &[u8],
        last: bool,
    ) -> io::Result<(Vec<u8>, Crc)> {
        // A fresh state per block: zlib-rs zeroes the window when a state is created but
        // not on `reset`, and its match finder compares bytes past the end of the input
        // (zlib-rs issue 459, zlib-ng 2100 are the same family), so a reused state let the
        // previous block's leftovers change this block's bytes (measured: `numbers` below
        // compressed differently on two threads than on one). The allocation is small
        // next to compressing 128 KiB.
        let mut deflate = Compress::new(flate2::Compression::new(self.level), false);
        if let Some(previous) = previous {
            let dictionary = &previous[previous.len().saturating_sub(WINDOW)..];
            deflate
                .set_dictionary(dictionary)
                .map_err(io::Error::other)?;
        }
        let flush = if last {
            FlushCompress::Finish
        } else {
            FlushCompress::Sync
        };
        let mut out = Vec::with_capacity(block.len() / 2 + 1024);
        // Counted from here: whether the dictionary counts as input is the library's call.
        let start = deflate.total_in();
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.capacity().max(4096));
            }
            let consumed = (deflate.total_in() - start) as usize;
            let status = deflate
                .compress_vec(&block[consumed..], &mut out, flush)
                .map_err(io::Error::other)?;
            let all_in = (deflate.total_in() - start) as usize == block.len();
            match status {
                Status::StreamEnd => break,
                // zlib's rule: a flush is complete once it returns with output room left.
                Status::Ok | Status::BufError if !last && all_in && out.len() < out.capacity() => {
                    break;
                }
                Status::Ok | Status::BufError => {}
            }
        }
        let mut crc = Crc::new();
        crc.update(block);
        Ok((out, crc))
    }
}

struct Job {
    previous: Option<Arc<Vec<u8>>>,
    block: Arc<Vec<u8>>,
    last: bool,
}

type Done = (u64, io::Result<(Vec<u8>, Crc)>);

/// Worker threads taking jobs from one queue; results come back tagged with their block
/// number and are written in order.
struct Pool {
    jobs: Option<SyncSender<(u64, Job)>>,
    results: Receiver<Done>,
    workers: Vec<JoinHandle<()>>,
    /// Finished out of order, waiting for the ones before them.
    waiting: BTreeMap<u64, (Vec<u8>, Crc)>,
    submitted: u64,
    written: u64,
    capacity: u64,
}

impl Pool {
    /// None if no thread could be started: the caller then compresses inline, to the
    /// same bytes.
    fn start(threads: usize, level: u32) -> Option<Pool> {
        let capacity = threads * IN_FLIGHT_PER_THREAD;
        let (job_tx, job_rx) = mpsc::sync_channel::<(u64, Job)>(capacity);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        let mut workers = Vec::new();
        for _ in 0..threads {
            let jobs = Arc::clone(&job_rx);
            let done = done_tx.clone();
            let spawned = std::thread::Builder::new()
                .name("xbake-gzip".into())
                .spawn(move || work(&jobs, &done, level));
            match spawned {
                Ok(handle) => workers.push(handle),
                // Fewer threads only make it slower.
                Err(_) => break,
            }
        }
        if workers.is_empty() {
            return None;
        }
        Some(Pool {
            jobs: Some(job_tx),
            results: done_rx,
            workers,
            waiting: BTreeMap::new(),
            submitted: 0,
            written: 0,
            capacity: capacity as u64,
        })
    }

    fn send(&mut self, job: Job) -> io::Result<()> {
        let jobs = self.jobs.as_ref().ok_or_else(gone)?;
        jobs.send((self.submitted, job)).map_err(|_| gone())?;
        self.submitted += 1;
        Ok(())
    }

    /// Waits for the next block in order.
    fn next_in_order(&mut self) -> io::Result<(Vec<u8>, Crc)> {
        loop {
            if let Some(done) = self.waiting.remove(&self.written) {
                self.written += 1;
                return Ok(done);
            }
            let (index, result) = self.results.recv().map_err(|_| gone())?;
            self.waiting.insert(index, result?);
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Closing the queue ends each worker after its current block.
        self.jobs = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

fn gone() -> io::Error {
    io::Error::other("the gzip worker threads stopped")
}

fn work(jobs: &Mutex<Receiver<(u64, Job)>>, done: &Sender<Done>, level: u32) {
    let compressor = BlockCompressor::new(level);
    loop {
        let next = match jobs.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok((index, job)) = next else { return };
        // A panic must come back as an error: the writer waits for every block number.
        let result = catch_unwind(AssertUnwindSafe(|| {
            compressor.compress(job.previous.as_deref(), &job.block, job.last)
        }))
        .unwrap_or_else(|_| Err(io::Error::other("a gzip worker thread panicked")));
        if done.send((index, result)).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gzip(data: &[u8], level: u32, threads: usize, chunk: usize) -> Vec<u8> {
        let mut w = ParallelGzip::new(Vec::new(), level, threads);
        for part in data.chunks(chunk.max(1)) {
            w.write_all(part).unwrap();
        }
        w.finish().unwrap()
    }

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    /// Several MB mixing text-like runs, zeros and incompressible noise (an xorshift, so
    /// no dependency), cut at odd places so blocks straddle the kinds.
    fn mixed(len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut noise = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        while out.len() < len {
            let run = (noise() % 300_000) as usize + 1;
            match noise() % 3 {
                0 => out.extend((0..run).map(|i| b"the quick brown fox "[i % 20])),
                1 => out.resize(out.len() + run, 0),
                _ => out.extend((0..run).map(|_| noise() as u8)),
            }
        }
        out.truncate(len);
        out
    }

    #[test]
    fn bytes_do_not_depend_on_the_thread_count_or_write_sizes() {
        let data = mixed(5 * 1024 * 1024 + 12_345);
        let reference = gzip(&data, 6, 1, 65_536);
        assert_eq!(gunzip(&reference), data);
        for (threads, chunk) in [(2, 65_536), (8, 65_536), (8, 1_000_003), (2, 511)] {
            assert!(
                gzip(&data, 6, threads, chunk) == reference,
                "{threads} threads, writes of {chunk} bytes"
            );
        }
    }

    /// Text like `seq 1 N`: long stretches where most matches sit near the maximum
    /// distance and lazy matching has many ties, where a reused deflate state once gave
    /// other bytes on two threads than on one.
    fn numbers(count: u32) -> Vec<u8> {
        (1..=count)
            .flat_map(|n| format!("{n}\n").into_bytes())
            .collect()
    }

    #[test]
    fn numbers_compress_the_same_on_any_thread_count() {
        let data = numbers(400_000);
        let one = gzip(&data, 6, 1, 8192);
        assert_eq!(gunzip(&one), data);
        for threads in [2, 3, 8] {
            assert!(gzip(&data, 6, threads, 8192) == one, "{threads} threads");
        }
    }

    #[test]
    fn block_boundaries_round_trip_identically_on_any_thread_count() {
        for len in [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK, 3 * BLOCK + 7] {
            let data = mixed(len);
            let one = gzip(&data, 6, 1, 4096);
            assert_eq!(gunzip(&one), data, "{len} bytes");
            for threads in [2, 8] {
                assert!(
                    gzip(&data, 6, threads, 4096) == one,
                    "{len} bytes, {threads}"
                );
            }
        }
    }

    #[test]
    fn header_and_trailer_are_fixed() {
        let data = mixed(300_000);
        let out = gzip(&data, 6, 2, 8192);
        assert_eq!(&out[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
        let mut crc = Crc::new();
        crc.update(&data);
        let n = out.len();
        assert_eq!(out[n - 8..n - 4], crc.sum().to_le_bytes());
        assert_eq!(out[n - 4..], (data.len() as u32).to_le_bytes());
        assert_eq!(gzip(b"", 9, 1, 1)[8], 2, "XFL for level 9");
        assert_eq!(gzip(b"", 1, 1, 1)[8], 4, "XFL for level 1");
    }

    #[test]
    fn levels_differ_and_all_decompress() {
        let data = mixed(1024 * 1024);
        let fast = gzip(&data, 1, 2, 65_536);
        let best = gzip(&data, 9, 2, 65_536);
        assert_ne!(fast, best);
        assert_eq!(gunzip(&fast), data);
        assert_eq!(gunzip(&best), data);
        // The preset dictionary keeps the ratio close to one-stream gzip's.
        let mut serial = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(9));
        serial.write_all(&data).unwrap();
        let serial = serial.finish().unwrap();
        assert!(
            best.len() < serial.len() + serial.len() / 100 + 64,
            "{} vs {}",
            best.len(),
            serial.len()
        );
    }

    #[test]
    fn the_system_gzip_accepts_the_stream() {
        let Ok(probe) = std::process::Command::new("gzip").arg("--version").output() else {
            eprintln!("no gzip on this machine; skipped");
            return;
        };
        assert!(probe.status.success());
        let data = mixed(2 * 1024 * 1024 + 99);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.gz");
        std::fs::write(&file, gzip(&data, 6, 8, 100_000)).unwrap();
        let test = std::process::Command::new("gzip")
            .arg("-t")
            .arg(&file)
            .status()
            .unwrap();
        assert!(test.success(), "gzip -t refused the stream");
        let out = std::process::Command::new("gzip")
            .arg("-dc")
            .arg(&file)
            .output()
            .unwrap();
        assert!(out.status.success());
        assert!(out.stdout == data, "gzip -dc gave other bytes");
    }
}
