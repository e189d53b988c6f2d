//! Number parsing with the kernel's rules: C-notation integers and `memparse` size suffixes.

use core::fmt;

/// Why a number did not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumError {
    /// Nothing to parse.
    Empty,
    /// A character that is not a digit of the base or a valid suffix.
    InvalidDigit,
    /// The value does not fit in 64 bits.
    Overflow,
}

impl NumError {
    /// Short reason, used in command-line diagnostics.
    pub const fn reason(self) -> &'static str {
        match self {
            Self::Empty => "empty number",
            Self::InvalidDigit => "invalid number",
            Self::Overflow => "number overflows 64 bits",
        }
    }
}

impl fmt::Display for NumError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

fn digits(s: &[u8], radix: u32) -> Result<(u64, usize), NumError> {
    let mut value: u64 = 0;
    let mut n = 0;
    while let Some(d) = s.get(n).and_then(|&c| char::from(c).to_digit(radix)) {
        value = value
            .checked_mul(u64::from(radix))
            .and_then(|v| v.checked_add(u64::from(d)))
            .ok_or(NumError::Overflow)?;
        n += 1;
    }
    Ok((value, n))
}

/// Parses the longest C-notation integer prefix (`0x` hex, leading `0` octal, else decimal);
/// returns the value and the bytes consumed.
fn c_integer_prefix(s: &[u8]) -> Result<(u64, usize), NumError> {
    match s {
        [] => Err(NumError::Empty),
        [b'0', b'x' | b'X', rest @ ..] => match digits(rest, 16)? {
            (_, 0) => Err(NumError::InvalidDigit),
            (v, n) => Ok((v, n + 2)),
        },
        [b'0', rest @ ..] => digits(rest, 8).map(|(v, n)| (v, n + 1)),
        _ => match digits(s, 10)? {
            (_, 0) => Err(NumError::InvalidDigit),
            found => Ok(found),
        },
    }
}

/// Parses a whole C-notation unsigned integer: `0x1f`, `017`, `42`.
pub fn parse_int(s: &str) -> Result<u64, NumError> {
    match c_integer_prefix(s.as_bytes())? {
        (v, n) if n == s.len() => Ok(v),
        _ => Err(NumError::InvalidDigit),
    }
}

/// The kernel's `memparse`, strictly: a C-notation integer plus an optional case-insensitive
/// K/M/G/T/P/E suffix (powers of 1024), consuming the whole string, with overflow checked.
///
/// As in the kernel, hex digits win over suffixes: `0x10E` is 0x10E, not 0x10 EiB.
pub fn memparse(s: &str) -> Result<u64, NumError> {
    let (value, n) = c_integer_prefix(s.as_bytes())?;
    let shift = match &s.as_bytes()[n..] {
        [] => return Ok(value),
        [suffix] => match suffix.to_ascii_uppercase() {
            b'K' => 10,
            b'M' => 20,
            b'G' => 30,
            b'T' => 40,
            b'P' => 50,
            b'E' => 60,
            _ => return Err(NumError::InvalidDigit),
        },
        _ => return Err(NumError::InvalidDigit),
    };
    value.checked_mul(1 << shift).ok_or(NumError::Overflow)
}

/// Parses hex with an optional `0x`/`0X` prefix, like the kernel's `kstrtoul(s, 16, ..)`.
pub fn parse_hex(s: &str) -> Result<u64, NumError> {
    let b = s.as_bytes();
    let b = match b {
        [b'0', b'x' | b'X', rest @ ..] => rest,
        _ => b,
    };
    match digits(b, 16)? {
        (_, 0) if b.is_empty() => Err(NumError::Empty),
        (v, n) if n == b.len() && n > 0 => Ok(v),
        _ => Err(NumError::InvalidDigit),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_notation() {
        assert_eq!(parse_int("0"), Ok(0));
        assert_eq!(parse_int("42"), Ok(42));
        assert_eq!(parse_int("0x1F"), Ok(31));
        assert_eq!(parse_int("0X1f"), Ok(31));
        assert_eq!(parse_int("017"), Ok(15));
        assert_eq!(parse_int("018"), Err(NumError::InvalidDigit));
        assert_eq!(parse_int("0x"), Err(NumError::InvalidDigit));
        assert_eq!(parse_int(""), Err(NumError::Empty));
        assert_eq!(parse_int("-1"), Err(NumError::InvalidDigit));
        assert_eq!(parse_int("+1"), Err(NumError::InvalidDigit));
        assert_eq!(parse_int("12K"), Err(NumError::InvalidDigit));
        assert_eq!(parse_int("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(parse_int("18446744073709551616"), Err(NumError::Overflow));
        assert_eq!(parse_int("0xffffffffffffffff"), Ok(u64::MAX));
        assert_eq!(parse_int("0x10000000000000000"), Err(NumError::Overflow));
    }

    #[test]
    fn memparse_suffixes() {
        assert_eq!(memparse("123456K"), Ok(123_456 * 1024));
        assert_eq!(memparse("786428k"), Ok(786_428 * 1024));
        assert_eq!(memparse("16M"), Ok(16 << 20));
        assert_eq!(memparse("2g"), Ok(2 << 30));
        assert_eq!(memparse("1T"), Ok(1 << 40));
        assert_eq!(memparse("1p"), Ok(1 << 50));
        assert_eq!(memparse("15E"), Ok(15 << 60));
        assert_eq!(memparse("16E"), Err(NumError::Overflow));
        assert_eq!(memparse("0x7f000000"), Ok(0x7F00_0000));
        assert_eq!(memparse("0x10M"), Ok(0x10 << 20));
        assert_eq!(memparse("0x10E"), Ok(0x10E));
        assert_eq!(memparse("010K"), Ok(8 * 1024));
        assert_eq!(memparse("0K"), Ok(0));
        assert_eq!(memparse("K"), Err(NumError::InvalidDigit));
        assert_eq!(memparse("1KB"), Err(NumError::InvalidDigit));
        assert_eq!(memparse("1Z"), Err(NumError::InvalidDigit));
        assert_eq!(memparse("zz"), Err(NumError::InvalidDigit));
        assert_eq!(memparse(""), Err(NumError::Empty));
        assert_eq!(memparse("99999999999999999999999"), Err(NumError::Overflow));
        assert_eq!(memparse("17179869184G"), Err(NumError::Overflow));
    }

    #[test]
    fn hex() {
        assert_eq!(parse_hex("f59e0"), Ok(0xF59E0));
        assert_eq!(parse_hex("0xf59e0"), Ok(0xF59E0));
        assert_eq!(parse_hex("0x"), Err(NumError::Empty));
        assert_eq!(parse_hex(""), Err(NumError::Empty));
        assert_eq!(parse_hex("xyz"), Err(NumError::InvalidDigit));
        assert_eq!(parse_hex("12 "), Err(NumError::InvalidDigit));
    }
}
