//! A kernel struct field located at run time (from BTF), read by the BPF programs without
//! compile-time kernel headers.

/// Where one field lives relative to the start of its struct. All-zero = absent on this kernel.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Field {
    /// Byte offset of the first byte holding the field.
    pub offset: u32,
    /// Size in bytes of the field (of its storage unit for bitfields), ≤ 8 for scalars.
    pub size: u8,
    /// For bitfields: bit position inside the 8 bytes read at `offset` (little endian).
    pub bit_shift: u8,
    /// For bitfields: width in bits; 0 for ordinary fields.
    pub bits: u8,
    /// 1 when the field exists on the running kernel.
    pub present: u8,
}

impl Field {
    pub const ABSENT: Field = Field { offset: 0, size: 0, bit_shift: 0, bits: 0, present: 0 };

    /// An ordinary field.
    pub const fn at(offset: u32, size: u8) -> Field {
        Field { offset, size, bit_shift: 0, bits: 0, present: 1 }
    }

    /// A bitfield starting `bit_offset` bits into the struct, `bits` wide.
    pub const fn bitfield(bit_offset: u32, bits: u8) -> Field {
        Field {
            offset: bit_offset / 8,
            size: 8,
            bit_shift: (bit_offset % 8) as u8,
            bits,
            present: 1,
        }
    }

    pub const fn is_present(&self) -> bool {
        self.present != 0
    }

    /// Extracts the field from the 8 little-endian bytes read at `offset`.
    pub const fn extract(&self, raw: u64) -> u64 {
        if self.bits != 0 {
            (raw >> self.bit_shift) & ((1u64 << self.bits) - 1)
        } else if self.size >= 8 {
            raw
        } else {
            raw & ((1u64 << (self.size as u32 * 8)) - 1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Field;

    #[test]
    fn extracts_scalars_and_bitfields() {
        let raw = 0x1122_3344_5566_7788u64;
        assert_eq!(Field::at(0, 2).extract(raw), 0x7788);
        assert_eq!(Field::at(0, 4).extract(raw), 0x5566_7788);
        assert_eq!(Field::at(0, 8).extract(raw), raw);
        // 4-bit field at bit 4 of byte 0x88 → 0x8; 1-bit field at bit 3 → 1.
        assert_eq!(Field::bitfield(4, 4).extract(raw), 0x8);
        assert_eq!(Field::bitfield(3, 1).extract(raw), 1);
        let f = Field::bitfield(8 * 13 + 5, 1);
        assert_eq!((f.offset, f.bit_shift), (13, 5));
    }
}
