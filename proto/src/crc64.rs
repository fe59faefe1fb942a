//! Azure Storage's CRC-64 (`x-ms-content-crc64`): polynomial 0x9A6C9329AC4BC9B5 in reflected
//! form, all bits inverted on the way in and out; the header carries its 8 bytes little-endian,
//! in base64.

const POLY: u64 = 0x9A6C_9329_AC4B_C9B5;

const fn table() -> [u64; 256] {
    let mut t = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u64;
        let mut k = 0;
        while k < 8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ POLY } else { crc >> 1 };
            k += 1;
        }
        t[i] = crc;
        i += 1;
    }
    t
}

static TABLE: [u64; 256] = table();

/// Continues a CRC over more bytes (start with 0).
pub fn update(crc: u64, data: &[u8]) -> u64 {
    let mut c = !crc;
    for &b in data {
        c = TABLE[((c as u8) ^ b) as usize] ^ (c >> 8);
    }
    !c
}

/// The header form of a CRC.
pub fn to_header(crc: u64) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(crc.to_le_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_azure_sdk_reference_values() {
        // Values from azure-storage-extensions 0.1.0 (Microsoft's C implementation).
        assert_eq!(update(0, b"hello"), 3_708_579_534_351_778_391);
        assert_eq!(update(0, b""), 0);
        let pattern: Vec<u8> = (0..=255u8).collect::<Vec<_>>().repeat(40);
        assert_eq!(update(0, &pattern), 16_246_241_450_644_948_377);
        // Continuing in pieces gives the same as in one go.
        let (a, b) = pattern.split_at(3333);
        assert_eq!(update(update(0, a), b), 16_246_241_450_644_948_377);
    }
}
