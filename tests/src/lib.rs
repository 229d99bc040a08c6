//! The end-to-end test harness: emulator processes, endpoints from the environment, streams, and a recording
//! proxy.

pub mod emulator;
pub mod env;
pub mod export;
pub mod firehose;
pub mod hostile;
pub mod iam;
pub mod proxy;
pub mod redis;
pub mod standin;
pub mod stream;
pub mod web;

/// `length` letters and digits that differ from `seed` to `seed` and do not repeat within: padding for tests about
/// how many bytes the spool holds, which stores entries compressed and would shrink a repeated character to
/// almost nothing.
pub fn incompressible(length: usize, seed: u64) -> String {
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..length)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            LETTERS[(state % LETTERS.len() as u64) as usize] as char
        })
        .collect()
}
