//! The SM4 block cipher (GB/T 32907-2016), for SM4-GCM through `aes-gcm`.
//!
//! The `sm4` crate computes one block at a time with a byte S-box and the linear map L applied
//! separately; sealing and opening the store's payloads spent more time in it than in anything
//! else (push: 42 % of the pusher's CPU, BENCHMARKS.md). Here S and L are folded into four
//! 256-entry tables (the textbook T-table form; table lookups, like the crate's S-box), and the
//! CTR mode GCM uses is fed eight blocks at a time so their rounds overlap. The output is the
//! same cipher: tests check the standard's vectors and that every value the `sm4` crate seals
//! opens here and the other way round.

use aes_gcm::aead::consts::{U16, U8};
use cipher::{
    inout::InOut, Block, BlockBackend, BlockCipher, BlockClosure, BlockEncrypt, BlockSizeUser, Key,
    KeyInit, KeySizeUser, ParBlocks, ParBlocksSizeUser,
};
use zeroize::Zeroize;

/// The S-box of GB/T 32907-2016.
#[rustfmt::skip]
const SBOX: [u8; 256] = [
    0xd6, 0x90, 0xe9, 0xfe, 0xcc, 0xe1, 0x3d, 0xb7, 0x16, 0xb6, 0x14, 0xc2, 0x28, 0xfb, 0x2c, 0x05,
    0x2b, 0x67, 0x9a, 0x76, 0x2a, 0xbe, 0x04, 0xc3, 0xaa, 0x44, 0x13, 0x26, 0x49, 0x86, 0x06, 0x99,
    0x9c, 0x42, 0x50, 0xf4, 0x91, 0xef, 0x98, 0x7a, 0x33, 0x54, 0x0b, 0x43, 0xed, 0xcf, 0xac, 0x62,
    0xe4, 0xb3, 0x1c, 0xa9, 0xc9, 0x08, 0xe8, 0x95, 0x80, 0xdf, 0x94, 0xfa, 0x75, 0x8f, 0x3f, 0xa6,
    0x47, 0x07, 0xa7, 0xfc, 0xf3, 0x73, 0x17, 0xba, 0x83, 0x59, 0x3c, 0x19, 0xe6, 0x85, 0x4f, 0xa8,
    0x68, 0x6b, 0x81, 0xb2, 0x71, 0x64, 0xda, 0x8b, 0xf8, 0xeb, 0x0f, 0x4b, 0x70, 0x56, 0x9d, 0x35,
    0x1e, 0x24, 0x0e, 0x5e, 0x63, 0x58, 0xd1, 0xa2, 0x25, 0x22, 0x7c, 0x3b, 0x01, 0x21, 0x78, 0x87,
    0xd4, 0x00, 0x46, 0x57, 0x9f, 0xd3, 0x27, 0x52, 0x4c, 0x36, 0x02, 0xe7, 0xa0, 0xc4, 0xc8, 0x9e,
    0xea, 0xbf, 0x8a, 0xd2, 0x40, 0xc7, 0x38, 0xb5, 0xa3, 0xf7, 0xf2, 0xce, 0xf9, 0x61, 0x15, 0xa1,
    0xe0, 0xae, 0x5d, 0xa4, 0x9b, 0x34, 0x1a, 0x55, 0xad, 0x93, 0x32, 0x30, 0xf5, 0x8c, 0xb1, 0xe3,
    0x1d, 0xf6, 0xe2, 0x2e, 0x82, 0x66, 0xca, 0x60, 0xc0, 0x29, 0x23, 0xab, 0x0d, 0x53, 0x4e, 0x6f,
    0xd5, 0xdb, 0x37, 0x45, 0xde, 0xfd, 0x8e, 0x2f, 0x03, 0xff, 0x6a, 0x72, 0x6d, 0x6c, 0x5b, 0x51,
    0x8d, 0x1b, 0xaf, 0x92, 0xbb, 0xdd, 0xbc, 0x7f, 0x11, 0xd9, 0x5c, 0x41, 0x1f, 0x10, 0x5a, 0xd8,
    0x0a, 0xc1, 0x31, 0x88, 0xa5, 0xcd, 0x7b, 0xbd, 0x2d, 0x74, 0xd0, 0x12, 0xb8, 0xe5, 0xb4, 0xb0,
    0x89, 0x69, 0x97, 0x4a, 0x0c, 0x96, 0x77, 0x7e, 0x65, 0xb9, 0xf1, 0x09, 0xc5, 0x6e, 0xc6, 0x84,
    0x18, 0xf0, 0x7d, 0xec, 0x3a, 0xdc, 0x4d, 0x20, 0x79, 0xee, 0x5f, 0x3e, 0xd7, 0xcb, 0x39, 0x48,
];

const FK: [u32; 4] = [0xa3b1_bac6, 0x56aa_3350, 0x677d_9197, 0xb270_22dc];

/// CK: byte j of CK_i is (4i + j) * 7 mod 256.
const CK: [u32; 32] = {
    let mut ck = [0u32; 32];
    let mut i = 0;
    while i < 32 {
        let mut j = 0;
        while j < 4 {
            let byte = ((4 * i + j) * 7 % 256) as u32;
            ck[i] |= byte << (24 - 8 * j);
            j += 1;
        }
        i += 1;
    }
    ck
};

const fn linear(b: u32) -> u32 {
    b ^ b.rotate_left(2) ^ b.rotate_left(10) ^ b.rotate_left(18) ^ b.rotate_left(24)
}

/// `T[k][x]` = L(S(x) placed in byte k, most significant first): T(w) is the XOR of one entry
/// from each table, since L is linear and S works byte by byte.
const T: [[u32; 256]; 4] = {
    let mut t = [[0u32; 256]; 4];
    let mut x = 0;
    while x < 256 {
        let l = linear((SBOX[x] as u32) << 24);
        t[0][x] = l;
        t[1][x] = l.rotate_right(8);
        t[2][x] = l.rotate_right(16);
        t[3][x] = l.rotate_right(24);
        x += 1;
    }
    t
};

#[inline(always)]
fn round_t(w: u32) -> u32 {
    T[0][(w >> 24) as usize]
        ^ T[1][((w >> 16) & 0xff) as usize]
        ^ T[2][((w >> 8) & 0xff) as usize]
        ^ T[3][(w & 0xff) as usize]
}

/// T' of the key schedule: S, then L' (B ^ B<<<13 ^ B<<<23).
fn key_t(w: u32) -> u32 {
    let b = u32::from_be_bytes(w.to_be_bytes().map(|x| SBOX[x as usize]));
    b ^ b.rotate_left(13) ^ b.rotate_left(23)
}

/// SM4 with its 32 round keys (zeroed on drop).
#[derive(Clone)]
pub struct Sm4 {
    rk: [u32; 32],
}

impl Drop for Sm4 {
    fn drop(&mut self) {
        self.rk.zeroize();
    }
}

impl std::fmt::Debug for Sm4 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sm4 { .. }")
    }
}

impl BlockCipher for Sm4 {}

impl KeySizeUser for Sm4 {
    type KeySize = U16;
}

impl BlockSizeUser for Sm4 {
    type BlockSize = U16;
}

impl KeyInit for Sm4 {
    fn new(key: &Key<Self>) -> Self {
        let mut k = [0u32; 4];
        for (i, w) in k.iter_mut().enumerate() {
            *w = word(&key[4 * i..4 * i + 4]) ^ FK[i];
        }
        let mut rk = [0u32; 32];
        for (i, r) in rk.iter_mut().enumerate() {
            let next = k[0] ^ key_t(k[1] ^ k[2] ^ k[3] ^ CK[i]);
            *r = next;
            k = [k[1], k[2], k[3], next];
        }
        k.zeroize();
        Sm4 { rk }
    }
}

#[inline(always)]
fn word(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl BlockEncrypt for Sm4 {
    fn encrypt_with_backend(&self, f: impl BlockClosure<BlockSize = U16>) {
        f.call(&mut Backend(self))
    }
}

/// Blocks processed together: CTR keystream blocks are independent, so eight chains of
/// rounds run interleaved instead of one after another.
const LANES: usize = 8;

struct Backend<'a>(&'a Sm4);

impl BlockSizeUser for Backend<'_> {
    type BlockSize = U16;
}

impl ParBlocksSizeUser for Backend<'_> {
    type ParBlocksSize = U8;
}

impl Backend<'_> {
    #[inline(always)]
    fn encrypt_lanes<const N: usize>(&self, x: &mut [[u32; 4]; N]) {
        for rk in self.0.rk.chunks_exact(4) {
            for r in 0..4 {
                for s in x.iter_mut() {
                    let v = s[(r + 1) % 4] ^ s[(r + 2) % 4] ^ s[(r + 3) % 4] ^ rk[r];
                    s[r] ^= round_t(v);
                }
            }
        }
    }
}

fn load(b: &Block<Sm4>) -> [u32; 4] {
    [
        word(&b[0..4]),
        word(&b[4..8]),
        word(&b[8..12]),
        word(&b[12..16]),
    ]
}

fn store(x: &[u32; 4], out: &mut Block<Sm4>) {
    // The output is the last four words in reverse order (R of the standard).
    for (i, w) in [x[3], x[2], x[1], x[0]].iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&w.to_be_bytes());
    }
}

impl BlockBackend for Backend<'_> {
    #[inline(always)]
    fn proc_block(&mut self, mut block: InOut<'_, '_, Block<Self>>) {
        let mut x = [load(block.get_in())];
        self.encrypt_lanes(&mut x);
        store(&x[0], block.get_out());
    }

    #[inline(always)]
    fn proc_par_blocks(&mut self, mut blocks: InOut<'_, '_, ParBlocks<Self>>) {
        let mut x = [[0u32; 4]; LANES];
        for (i, s) in x.iter_mut().enumerate() {
            *s = load(&blocks.get_in()[i]);
        }
        self.encrypt_lanes(&mut x);
        for (i, s) in x.iter().enumerate() {
            store(s, &mut blocks.get_out()[i]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes_gcm::aead::Aead;
    use aes_gcm::AesGcm;

    fn hex16(s: &str) -> [u8; 16] {
        let v = hex::decode(s).unwrap();
        v.try_into().unwrap()
    }

    fn encrypt(key: &[u8; 16], block: &[u8; 16]) -> [u8; 16] {
        let c = Sm4::new(key.into());
        let mut b = (*block).into();
        c.encrypt_block(&mut b);
        b.into()
    }

    #[test]
    fn standard_example_1() {
        // GB/T 32907-2016 appendix A, example 1.
        let k = hex16("0123456789abcdeffedcba9876543210");
        assert_eq!(
            hex::encode(encrypt(&k, &k)),
            "681edf34d206965e86b3e94f536e4246"
        );
    }

    #[test]
    fn standard_example_2_a_million_times() {
        // Example 2: the same block encrypted 1,000,000 times under the same key.
        let k = hex16("0123456789abcdeffedcba9876543210");
        let c = Sm4::new((&k).into());
        let mut b = k.into();
        for _ in 0..1_000_000 {
            c.encrypt_block(&mut b);
        }
        assert_eq!(hex::encode(b), "595298c7c6fd271f0402f804c33d3f66");
    }

    #[test]
    fn blocks_in_parallel_equal_blocks_one_by_one_and_the_sm4_crate() {
        use cipher::BlockEncrypt as _;
        for seed in 0..20u8 {
            let key: [u8; 16] =
                std::array::from_fn(|i| seed.wrapping_mul(31).wrapping_add(i as u8 * 7));
            let ours = Sm4::new((&key).into());
            let theirs = sm4::Sm4::new((&key).into());
            // 19 blocks: two groups of eight and a tail of three.
            let mut a: Vec<Block<Sm4>> = (0..19u8)
                .map(|n| std::array::from_fn::<u8, 16, _>(|i| n ^ seed ^ (i as u8 * 13)).into())
                .collect();
            let mut b = a.clone();
            let mut c = a.clone();
            ours.encrypt_blocks(&mut a);
            for blk in &mut b {
                ours.encrypt_block(blk);
            }
            theirs.encrypt_blocks(&mut c);
            assert_eq!(a, b);
            assert_eq!(a, c);
        }
    }

    #[test]
    fn gcm_values_sealed_by_the_sm4_crate_open_here_and_back() {
        type Ours = AesGcm<Sm4, aes_gcm::aead::consts::U12>;
        type Theirs = AesGcm<sm4::Sm4, aes_gcm::aead::consts::U12>;
        let key = [9u8; 16];
        let ours = Ours::new((&key).into());
        let theirs = Theirs::new((&key).into());
        let nonce = [3u8; 12];
        for len in [0usize, 1, 15, 16, 17, 127, 128, 129, 300, 2000] {
            let msg: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            let sealed = theirs.encrypt((&nonce).into(), msg.as_slice()).unwrap();
            assert_eq!(
                ours.encrypt((&nonce).into(), msg.as_slice()).unwrap(),
                sealed
            );
            assert_eq!(
                ours.decrypt((&nonce).into(), sealed.as_slice()).unwrap(),
                msg
            );
            let mine = ours.encrypt((&nonce).into(), msg.as_slice()).unwrap();
            assert_eq!(
                theirs.decrypt((&nonce).into(), mine.as_slice()).unwrap(),
                msg
            );
        }
    }
}
