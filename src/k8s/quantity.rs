//! Kubernetes resource quantities ("500m", "1Gi", "1e3"), parsed and compared as apimachinery's
//! `resource.ParseQuantity` and `Quantity.Cmp` do, so that what we accept, reject and compare is
//! what the API server and node-agent (both Go) will see.
//!
//! Values are kept exactly (a digit string and a base-10 exponent), so comparisons never overflow
//! and an exponent like 2147483647 costs nothing: it is compared, never expanded.
//!
//! Go keeps exponents and scales in `int32`. Where that arithmetic wraps and Go still returns
//! (`0.0001e-2147483647` reads as 1e2147483645), we read what Go reads: it is the value node-agent
//! acts on. Two deliberate differences keep node-agent from values it cannot handle:
//! - an exponent outside ±(2^31−1) is rejected (as upstream PR #141203 does; Go wraps it, so
//!   `1e4294967297` reads as 10);
//! - an input on which Go's parser never returns (it would rescale it to nano by more than 2^20
//!   digits, e.g. `1e-2147483646`) is rejected at once.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// Why a string is not a quantity. The first three texts are apimachinery's, word for word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// Go's `ErrFormatWrong`: the string is not `<number><suffix>`.
    #[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")]
    FormatWrong,
    /// Go's `ErrNumeric`: Go's exact-arithmetic path found no digit to evaluate (e.g. `Pi`, `e-10`).
    #[error("unable to parse numeric part of quantity")]
    Numeric,
    /// Go's `ErrSuffix`: an unknown suffix (`1K`, `1ki`) or an exponent that is not a 64-bit integer.
    #[error("unable to parse quantity's suffix")]
    Suffix,
    /// Ours: Go would silently wrap such an exponent to 32 bits (or never return).
    #[error("quantity's exponent must be between -2147483647 and 2147483647")]
    ExponentOutOfRange,
    /// Ours: Go's parser would not return on this input (it rescales it by more than 2^20 digits).
    #[error("quantity cannot be evaluated: Kubernetes' parser would not terminate on it (it needs rescaling by more than 1048576 digits)")]
    Unevaluable,
}

/// How a quantity was written; it picks the suffix family of the canonical form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `e`/`E` exponents, e.g. `12e6`.
    DecimalExponent,
    /// Powers of 1024, e.g. `12Mi`.
    BinarySI,
    /// Powers of 1000, e.g. `12M`, `500m`.
    DecimalSI,
}

/// An exact quantity as Go's `ParseQuantity` reads it: `sign · digits · 10^exp`, rounded up (away
/// from zero) to nano, BinarySI capped at ±(2^63−1).
///
/// Equality and ordering are by value, whatever the spelling: `1000m == 1`, `1Ki == 1024`.
#[derive(Clone)]
pub struct Quantity {
    negative: bool,
    /// Significant digits (0..=9), no leading or trailing zeros; empty for zero.
    digits: Digits,
    exp: i64,
    format: Format,
}

/// Parses a quantity exactly as apimachinery's `ParseQuantity` does (no whitespace trimming).
pub fn parse(s: &str) -> Result<Quantity, QuantityError> {
    if s.is_empty() {
        return Err(QuantityError::FormatWrong);
    }
    let lexed = lex(s.as_bytes())?;
    match interpret(lexed.suffix)? {
        Suffix::Decimal { exp, format } => parse_decimal(&lexed, exp, format),
        Suffix::Binary { exp2 } => parse_binary(&lexed, exp2),
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

impl Quantity {
    /// True for any spelling of zero (`0`, `-0m`, `0Ki`).
    pub fn is_zero(&self) -> bool {
        self.digits.is_empty()
    }

    /// True below zero; validation rejects negative requests and limits.
    pub fn is_negative(&self) -> bool {
        self.negative
    }

    /// The suffix family the quantity was written in.
    pub fn format(&self) -> Format {
        self.format
    }

    /// apimachinery's canonical `String()` (as after arithmetic, i.e. without its cache of the
    /// input spelling), for messages such as "must be less than or equal to cpu limit of 2".
    pub fn canonical(&self) -> String {
        self.to_string()
    }

    /// Go's `ScaledValue(scale)`: the value in units of 10^scale, rounded up away from zero; `None`
    /// when that does not fit an `i64` (where Go returns a wrapped number).
    pub(crate) fn scaled_value(&self, scale: i64) -> Option<i64> {
        let digits = self.digits.as_slice();
        if digits.is_empty() {
            return Some(0);
        }
        let shift = self.exp.checked_sub(scale)?;
        let magnitude = if shift >= 0 {
            let zeros = u32::try_from(shift).ok()?;
            digits_to_u128(digits)?.checked_mul(10u128.checked_pow(zeros)?)?
        } else {
            // Digits below the unit are dropped; normalized digits end in a non-zero digit, so
            // something non-zero is always dropped and the result goes one up.
            let dropped = usize::try_from(shift.unsigned_abs()).ok()?;
            let kept = digits.get(..digits.len().saturating_sub(dropped)).unwrap_or_default();
            digits_to_u128(kept)?.checked_add(1)?
        };
        let magnitude = i64::try_from(magnitude).ok()?;
        Some(if self.negative { -magnitude } else { magnitude })
    }

    /// True when the value has no fractional part.
    pub(crate) fn is_integer(&self) -> bool {
        self.exp >= 0
    }

    fn zero(format: Format) -> Self {
        Self { negative: false, digits: Digits::new(), exp: 0, format }
    }

    fn signum(&self) -> i8 {
        match (self.is_zero(), self.negative) {
            (true, _) => 0,
            (false, true) => -1,
            (false, false) => 1,
        }
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.signum(), other.signum()) {
            (a, b) if a != b => a.cmp(&b),
            (0, _) => Ordering::Equal,
            (1, _) => cmp_magnitude(self.digits.as_slice(), self.exp, other.digits.as_slice(), other.exp),
            _ => cmp_magnitude(other.digits.as_slice(), other.exp, self.digits.as_slice(), self.exp),
        }
    }
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Quantity {}

impl fmt::Debug for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Quantity({} = ", self)?;
        if self.negative {
            f.write_str("-")?;
        }
        write_digits(f, self.digits.as_slice())?;
        write!(f, "e{}, {:?})", self.exp, self.format)
    }
}

/// The canonical form (see [`Quantity::canonical`]).
/// The largest multiple of three within the 32-bit exponent range `parse` accepts.
const MAX_WRITTEN_EXP3: i64 = 2_147_483_646;

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.digits.as_slice();
        if digits.is_empty() {
            return f.write_str("0");
        }
        if self.negative {
            f.write_str("-")?;
        }
        if self.format == Format::BinarySI {
            // Go shows BinarySI as DecimalSI when |v| < 1024 or v has a fraction.
            let big_enough = cmp_magnitude(digits, self.exp, &[1, 0, 2, 4], 0) != Ordering::Less;
            if let Some(value) = big_enough.then(|| self.integer_u64()).flatten() {
                return write_binary(f, value);
            }
        }
        // Strip factors of ten (done: digits are normalized), then floor the exponent to a
        // multiple of three, padding the mantissa with zeros.
        let mut pad = self.exp.rem_euclid(3);
        let mut exp3 = self.exp - pad;
        // Keep the written exponent within what `parse` accepts, so the form reads back.
        if exp3 > MAX_WRITTEN_EXP3 {
            pad += exp3 - MAX_WRITTEN_EXP3;
            exp3 = MAX_WRITTEN_EXP3;
        }
        // Padding a long mantissa under a huge exponent would spell a value Go's parser never
        // finishes; write the exponent as it is instead (still a valid, equal quantity).
        if digits.len() as i64 + pad > 18 && exp3.unsigned_abs() > 1 << 20 {
            write_digits(f, digits)?;
            return write!(f, "e{}", self.exp);
        }
        write_digits(f, digits)?;
        for _ in 0..pad {
            f.write_str("0")?;
        }
        match (self.format, decimal_si_suffix(exp3)) {
            (Format::DecimalExponent, _) if exp3 == 0 => Ok(()),
            (Format::DecimalExponent, _) | (_, None) => write!(f, "e{exp3}"),
            (_, Some(suffix)) => f.write_str(suffix),
        }
    }
}

impl Quantity {
    /// |value| as a `u64` when it is an integer that fits.
    fn integer_u64(&self) -> Option<u64> {
        let zeros = u32::try_from(self.exp).ok()?;
        let value = digits_to_u128(self.digits.as_slice())?.checked_mul(10u128.checked_pow(zeros)?)?;
        u64::try_from(value).ok()
    }
}

/// Writes an integer in powers of 1024 (`1536Mi`), as Go's `AsCanonicalBase1024Bytes` does.
fn write_binary(f: &mut fmt::Formatter<'_>, mut value: u64) -> fmt::Result {
    const SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    let mut power = 0;
    while value >= 1024 && value % 1024 == 0 && power + 1 < SUFFIXES.len() {
        value /= 1024;
        power += 1;
    }
    write!(f, "{value}{}", SUFFIXES.get(power).copied().unwrap_or_default())
}

/// The DecimalSI suffix for 10^exp; `None` past the table, where Go (after PR #140459) writes
/// `e<exp>` instead.
fn decimal_si_suffix(exp: i64) -> Option<&'static str> {
    Some(match exp {
        -9 => "n",
        -6 => "u",
        -3 => "m",
        0 => "",
        3 => "k",
        6 => "M",
        9 => "G",
        12 => "T",
        15 => "P",
        18 => "E",
        _ => return None,
    })
}

fn write_digits(f: &mut fmt::Formatter<'_>, digits: &[u8]) -> fmt::Result {
    digits.iter().try_for_each(|&d| fmt::Write::write_char(f, char::from(b'0' + d)))
}

/// Compares `a·10^ae` with `b·10^be`, both normalized and non-zero: first by order of magnitude,
/// then digit by digit (without trailing zeros, the longer of two equal prefixes is larger).
fn cmp_magnitude(a: &[u8], ae: i64, b: &[u8], be: i64) -> Ordering {
    let magnitude = |digits: &[u8], exp: i64| exp.saturating_add(len_i64(digits.len()));
    magnitude(a, ae).cmp(&magnitude(b, be)).then_with(|| a.cmp(b))
}

fn digits_to_u128(digits: &[u8]) -> Option<u128> {
    digits.iter().try_fold(0u128, |acc, &d| acc.checked_mul(10)?.checked_add(u128::from(d)))
}

fn len_i64(len: usize) -> i64 {
    i64::try_from(len).unwrap_or(i64::MAX)
}

/// Go keeps scales in `int32` and lets its arithmetic wrap; this reproduces that narrowing.
fn wrap_i32(value: i64) -> i64 {
    i64::from(value as i32)
}

/// The largest exponent magnitude accepted: `math.MaxInt32`, as upstream PR #141203.
const MAX_EXPONENT: i64 = i32::MAX as i64;
/// Nano: parsed values are rounded up to 10^-9.
const NANO: i64 = -9;
/// Go's int64 fast path takes at most this many digits (`maxInt64Factors`).
const MAX_INT64_FACTORS: i64 = 18;
/// Go's inf.Dec rounding does not return when it rescales by more than this many digits; this is
/// the mechanism upstream's `parseHangs` predicate describes for the inputs recorded as `hang`.
const MAX_RESCALE_DIGITS: i64 = 1 << 20;
/// 2^63 − 1, the cap on BinarySI values.
const MAX_INT64_DIGITS: [u8; 19] = [9, 2, 2, 3, 3, 7, 2, 0, 3, 6, 8, 5, 4, 7, 7, 5, 8, 0, 7];
const SUFFIX_LETTERS: &[u8] = b"eEinumkKMGTP";

/// A quantity string split as Go's `parseQuantityString` splits it.
struct Lexed<'a> {
    negative: bool,
    /// Whether the number holds a digit; Go's inf.Dec path fails on one without.
    has_digits: bool,
    /// Integer digits without leading zeros (may be empty).
    int: &'a [u8],
    /// Fraction digits (may be empty).
    frac: &'a [u8],
    suffix: &'a [u8],
}

fn lex(s: &[u8]) -> Result<Lexed<'_>, QuantityError> {
    let (negative, rest) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, s),
    };
    let zeros = rest.iter().take_while(|&&b| b == b'0').count();
    let rest = rest.get(zeros..).unwrap_or_default();
    if rest.is_empty() {
        // Go reads a bare sign, or a run of zeros, as the number "0".
        return Ok(Lexed { negative, has_digits: true, int: &[], frac: &[], suffix: &[] });
    }
    let (int, mut rest) = split_digits(rest);
    let mut frac: &[u8] = &[];
    if let Some(after_dot) = rest.strip_prefix(b".") {
        (frac, rest) = split_digits(after_dot);
    }
    let letters = rest.iter().take_while(|b| SUFFIX_LETTERS.contains(b)).count();
    let tail = rest.get(letters..).unwrap_or_default();
    let tail = tail.strip_prefix(b"+").or_else(|| tail.strip_prefix(b"-")).unwrap_or(tail);
    if !tail.iter().all(u8::is_ascii_digit) {
        return Err(QuantityError::FormatWrong);
    }
    let has_digits = zeros > 0 || !int.is_empty() || !frac.is_empty();
    Ok(Lexed { negative, has_digits, int, frac, suffix: rest })
}

fn split_digits(s: &[u8]) -> (&[u8], &[u8]) {
    let n = s.iter().take_while(|b| b.is_ascii_digit()).count();
    s.split_at_checked(n).unwrap_or((s, &[]))
}

enum Suffix {
    Decimal { exp: i64, format: Format },
    Binary { exp2: u32 },
}

/// Go's `suffixHandler.interpret`, plus our exponent range check.
fn interpret(suffix: &[u8]) -> Result<Suffix, QuantityError> {
    let decimal = |exp| Ok(Suffix::Decimal { exp, format: Format::DecimalSI });
    let binary = |exp2| Ok(Suffix::Binary { exp2 });
    match suffix {
        b"n" => decimal(-9),
        b"u" => decimal(-6),
        b"m" => decimal(-3),
        b"" => decimal(0),
        b"k" => decimal(3),
        b"M" => decimal(6),
        b"G" => decimal(9),
        b"T" => decimal(12),
        b"P" => decimal(15),
        b"E" => decimal(18),
        b"Ki" => binary(10),
        b"Mi" => binary(20),
        b"Gi" => binary(30),
        b"Ti" => binary(40),
        b"Pi" => binary(50),
        b"Ei" => binary(60),
        [b'e' | b'E', rest @ ..] if !rest.is_empty() => {
            let exp = parse_int64(rest).ok_or(QuantityError::Suffix)?;
            if exp.unsigned_abs() > MAX_EXPONENT.unsigned_abs() {
                return Err(QuantityError::ExponentOutOfRange);
            }
            Ok(Suffix::Decimal { exp, format: Format::DecimalExponent })
        }
        _ => Err(QuantityError::Suffix),
    }
}

/// Go's `strconv.ParseInt(s, 10, 64)`: an optional sign, then at least one digit, in range.
fn parse_int64(s: &[u8]) -> Option<i64> {
    let (negative, digits) = match s.split_first()? {
        (b'-', rest) => (true, rest),
        (b'+', rest) => (false, rest),
        _ => (false, s),
    };
    if digits.is_empty() {
        return None;
    }
    let magnitude = digits.iter().try_fold(0u64, |acc, &b| {
        let digit = b.is_ascii_digit().then(|| u64::from(b - b'0'))?;
        acc.checked_mul(10)?.checked_add(digit)
    })?;
    if negative {
        (magnitude <= 1 << 63).then(|| 0i64.wrapping_sub_unsigned(magnitude))
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// DecimalSI and DecimalExponent: Go evaluates up to 18 digits at scale ≥ nano in an int64 and
/// everything else with inf.Dec; the value read is `digits · 10^exp` with Go's int32 scale
/// arithmetic, so an input whose scale wraps reads as Go reads it.
fn parse_decimal(lexed: &Lexed<'_>, exponent: i64, format: Format) -> Result<Quantity, QuantityError> {
    let int_len = len_i64(lexed.int.len().max(1));
    let frac_len = len_i64(lexed.frac.len());
    let fast_scale = wrap_i32(exponent.saturating_sub(frac_len));
    let fast = MAX_INT64_FACTORS - int_len.saturating_add(frac_len) >= 0 && fast_scale >= NANO;
    if !lexed.has_digits {
        // The int64 path reads no digits as 0; inf.Dec's SetString fails on them.
        return if fast { Ok(Quantity::zero(format)) } else { Err(QuantityError::Numeric) };
    }
    let exp = if fast {
        fast_scale
    } else {
        if is_zero(lexed) {
            return Ok(Quantity::zero(format)); // Go does not round zero, so it never rescales it.
        }
        let scale = wrap_i32(frac_len.saturating_sub(exponent));
        check_rescale(scale)?;
        -scale
    };
    let (digits, exp) = significant_digits(lexed, exp);
    Ok(finish(lexed.negative, digits, exp, format))
}

/// BinarySI: `digits · 2^exp2 / 10^frac_len`, exact, then rounded to nano and capped.
fn parse_binary(lexed: &Lexed<'_>, exp2: u32) -> Result<Quantity, QuantityError> {
    if !lexed.has_digits {
        // Go's int64 path (which reads no digits as 0) is taken while
        // 15 - 1 - exp2·3/10 - 1 >= 0, i.e. up to Ti; Pi and Ei go to inf.Dec, which fails.
        return if exp2 <= 40 { Ok(Quantity::zero(Format::BinarySI)) } else { Err(QuantityError::Numeric) };
    }
    if is_zero(lexed) {
        return Ok(Quantity::zero(Format::BinarySI));
    }
    // A fraction sends Go through inf.Dec at scale frac_len (without one the check passes).
    let frac_len = len_i64(lexed.frac.len());
    check_rescale(wrap_i32(frac_len))?;
    let (digits, exp) = significant_digits(lexed, -frac_len);
    let (digits, exp) = strip_trailing_zeros(mul_pow2(digits.as_slice(), exp2), exp);
    let mut q = finish(lexed.negative, digits, exp, Format::BinarySI);
    if cmp_magnitude(q.digits.as_slice(), q.exp, &MAX_INT64_DIGITS, 0) == Ordering::Greater {
        q.digits = Digits::from_slice(&MAX_INT64_DIGITS);
        q.exp = 0;
    }
    // Go shows a BinarySI value in (0, 1) as DecimalSI.
    if q.exp.saturating_add(len_i64(q.digits.len())) <= 0 && !q.is_zero() {
        q.format = Format::DecimalSI;
    }
    Ok(q)
}

fn is_zero(lexed: &Lexed<'_>) -> bool {
    lexed.int.iter().chain(lexed.frac).all(|&b| b == b'0')
}

/// Rejects what Go's inf.Dec round to nano (from `scale`) would never finish: a rescale by more
/// than 2^20 digits, computed in int32 as Go does (a shift of MinInt32 is a no-op there).
fn check_rescale(scale: i64) -> Result<(), QuantityError> {
    let shift = wrap_i32(-NANO - scale);
    if shift != i64::from(i32::MIN) && shift.abs() > MAX_RESCALE_DIGITS {
        return Err(QuantityError::Unevaluable);
    }
    Ok(())
}

/// The integer and fraction digits as one mantissa without leading or trailing zeros, with `exp`
/// adjusted for the trailing zeros it drops.
fn significant_digits(lexed: &Lexed<'_>, exp: i64) -> (Digits, i64) {
    let mut digits = Digits::new();
    for &b in lexed.int.iter().chain(lexed.frac) {
        if !(digits.is_empty() && b == b'0') {
            digits.push(b - b'0');
        }
    }
    strip_trailing_zeros(digits, exp)
}

/// Moves trailing zeros into the exponent (the digits never have leading zeros: they are read
/// without them, and products and increments of such digits have none).
fn strip_trailing_zeros(mut digits: Digits, exp: i64) -> (Digits, i64) {
    let trailing = digits.as_slice().iter().rev().take_while(|&&d| d == 0).count();
    digits.truncate(digits.len().saturating_sub(trailing));
    (digits, exp.saturating_add(len_i64(trailing)))
}

/// Builds the quantity, rounding up away from zero to nano as Go's `inf.RoundUp` to scale 9.
fn finish(negative: bool, mut digits: Digits, mut exp: i64, format: Format) -> Quantity {
    if digits.is_empty() {
        return Quantity::zero(format);
    }
    if exp < NANO {
        let dropped = usize::try_from(NANO.saturating_sub(exp)).unwrap_or(usize::MAX);
        let kept = digits.len().saturating_sub(dropped);
        exp = NANO;
        if kept == 0 {
            digits = Digits::from_slice(&[1]);
        } else {
            // The dropped digits end in a non-zero one, so the kept part goes one up.
            digits.truncate(kept);
            if increment(digits.as_mut_slice()) {
                digits = Digits::from_slice(&[1]);
                exp = NANO.saturating_add(len_i64(kept));
            }
            (digits, exp) = strip_trailing_zeros(digits, exp);
        }
    }
    Quantity { negative, digits, exp, format }
}

/// Adds one to the digit string; returns true when it carries out of the top (all nines).
fn increment(digits: &mut [u8]) -> bool {
    for d in digits.iter_mut().rev() {
        if *d == 9 {
            *d = 0;
        } else {
            *d += 1;
            return false;
        }
    }
    true
}

/// `digits · 2^exp2` (exp2 ≤ 60), most significant digit first.
fn mul_pow2(digits: &[u8], exp2: u32) -> Digits {
    let factor = 1u128 << exp2.min(64);
    let mut out = Digits::with_capacity(digits.len().saturating_add(20));
    let mut carry = 0u128;
    for &d in digits.iter().rev() {
        let t = u128::from(d) * factor + carry;
        out.push((t % 10) as u8);
        carry = t / 10;
    }
    while carry > 0 {
        out.push((carry % 10) as u8);
        carry /= 10;
    }
    out.as_mut_slice().reverse();
    out
}

/// Digit storage that keeps ordinary quantities ("500m", "1Gi", even 2^63−1 with nano digits)
/// inline, so parsing on the request path does not allocate.
#[derive(Clone)]
enum Digits {
    Inline { len: u8, buf: [u8; INLINE_DIGITS] },
    Heap(Vec<u8>),
}

const INLINE_DIGITS: usize = 30;

impl Digits {
    const fn new() -> Self {
        Self::Inline { len: 0, buf: [0; INLINE_DIGITS] }
    }

    fn with_capacity(capacity: usize) -> Self {
        if capacity <= INLINE_DIGITS {
            Self::new()
        } else {
            Self::Heap(Vec::with_capacity(capacity))
        }
    }

    fn from_slice(digits: &[u8]) -> Self {
        let mut out = Self::with_capacity(digits.len());
        match &mut out {
            Self::Inline { len, buf } => {
                if let Some(dst) = buf.get_mut(..digits.len()) {
                    dst.copy_from_slice(digits);
                    *len = digits.len() as u8;
                }
            }
            Self::Heap(v) => v.extend_from_slice(digits),
        }
        out
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Self::Inline { len, buf } => buf.get(..usize::from(*len)).unwrap_or_default(),
            Self::Heap(v) => v,
        }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        match self {
            Self::Inline { len, buf } => buf.get_mut(..usize::from(*len)).unwrap_or_default(),
            Self::Heap(v) => v,
        }
    }

    fn len(&self) -> usize {
        self.as_slice().len()
    }

    fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }

    fn push(&mut self, digit: u8) {
        match self {
            Self::Inline { len, buf } => match buf.get_mut(usize::from(*len)) {
                Some(slot) => {
                    *slot = digit;
                    *len += 1;
                }
                None => {
                    let mut v = Vec::with_capacity(2 * INLINE_DIGITS);
                    v.extend_from_slice(buf);
                    v.push(digit);
                    *self = Self::Heap(v);
                }
            },
            Self::Heap(v) => v.push(digit),
        }
    }

    fn truncate(&mut self, new_len: usize) {
        match self {
            Self::Inline { len, .. } => *len = (*len).min(u8::try_from(new_len).unwrap_or(u8::MAX)),
            Self::Heap(v) => v.truncate(new_len),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    use Format::{BinarySI, DecimalExponent, DecimalSI};
    use QuantityError::{ExponentOutOfRange, FormatWrong, Numeric, Suffix, Unevaluable};

    /// The exact value as `<digits>e<exp>` ("0" for zero): the upstream decode corpus notation.
    fn value_me(q: &Quantity) -> String {
        if q.is_zero() {
            return "0".to_string();
        }
        let digits: String = q.digits.as_slice().iter().map(|&d| char::from(b'0' + d)).collect();
        format!("{}{digits}e{}", if q.negative { "-" } else { "" }, q.exp)
    }

    /// A decimal such as "-0.000000005", "1126.4" or "1e100" in `value_me` notation.
    fn decimal_value_me(s: &str) -> String {
        let (negative, s) = s.strip_prefix('-').map_or((false, s), |rest| (true, rest));
        let (mantissa, exp) = s.split_once('e').map_or((s, 0), |(m, e)| (m, e.parse::<i64>().unwrap()));
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let digits = format!("{int}{frac}");
        let digits = digits.trim_start_matches('0');
        if digits.is_empty() {
            return "0".to_string();
        }
        let significant = digits.trim_end_matches('0');
        let exp = exp - frac.len() as i64 + (digits.len() - significant.len()) as i64;
        format!("{}{significant}e{exp}", if negative { "-" } else { "" })
    }

    /// Whether `s` is `<number>e<exponent>` with an exponent Go's ParseInt accepts that lies outside
    /// ±MaxInt32: the documented deliberate difference (Go wraps or hangs; we reject).
    fn exponent_out_of_range(s: &str) -> bool {
        let Some((number, exp)) = s.rsplit_once(['e', 'E']) else {
            return false;
        };
        let number = number.trim_start_matches(['+', '-']);
        let well_formed = number.chars().all(|c| c.is_ascii_digit() || c == '.') && number.matches('.').count() <= 1;
        well_formed && exp.parse::<i64>().is_ok_and(|e| e.unsigned_abs() > i32::MAX as u64)
    }

    fn load(name: &str) -> Value {
        let path = format!("{}/testdata/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn str_field<'a>(rec: &'a Value, key: &str) -> Option<&'a str> {
        rec.get(key).and_then(Value::as_str)
    }

    /// Tallies of a vector run, reported in the assertion message (deliberate rejections are
    /// checks that passed).
    #[derive(Default)]
    struct Tally {
        checked: usize,
        deliberate: usize,
        failures: Vec<String>,
    }

    impl Tally {
        fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
            self.checked += 1;
            if !ok {
                self.failures.push(what());
            }
        }

        fn assert_clean(&self, file: &str) {
            eprintln!(
                "{file}: {} checks ({} of them deliberate exponent-range rejections), {} failed",
                self.checked,
                self.deliberate,
                self.failures.len()
            );
            assert!(
                self.failures.is_empty(),
                "{file}: {} of {} checks disagree:\n{}",
                self.failures.len(),
                self.checked,
                self.failures.join("\n")
            );
        }

        /// A record Go accepts: our value, format and canonical form must match the vector's.
        fn valid(&mut self, rec: &Value) {
            let input = str_field(rec, "in").unwrap();
            let q = match parse(input) {
                Ok(q) => q,
                Err(err) => {
                    let deliberate = err == ExponentOutOfRange && exponent_out_of_range(input);
                    self.deliberate += usize::from(deliberate);
                    return self.check(deliberate, || format!("{input:?}: rejected ({err}), Go accepts it"));
                }
            };
            for key in ["value", "derived_value"] {
                if let Some(want) = str_field(rec, key) {
                    let (got, want) = (value_me(&q), decimal_value_me(want));
                    self.check(got == want, || format!("{input:?}: value {got}, {key} {want}"));
                }
            }
            for key in ["format", "derived_format"] {
                if let Some(want) = str_field(rec, key) {
                    let got = format!("{:?}", q.format());
                    self.check(got == want, || format!("{input:?}: format {got}, {key} {want}"));
                }
            }
            let got = q.canonical();
            let uncached = str_field(rec, "derived_canonical_uncached")
                .or_else(|| str_field(rec, "derived_canonical_after_upstream_fix_140459"));
            if let Some(want) = uncached.or_else(|| str_field(rec, "derived_canonical")) {
                self.check(got == want, || format!("{input:?}: canonical {got:?}, want {want:?}"));
            }
            if let Some(stated) = str_field(rec, "canonical") {
                // An upstream-stated String() may be the cached input spelling (issue #138165).
                let cached = uncached.is_some() && str_field(rec, "derived_canonical") == Some(stated);
                self.check(got == stated || cached, || format!("{input:?}: canonical {got:?}, upstream {stated:?}"));
            }
        }

        /// A record Go rejects, with Go's error text.
        fn invalid(&mut self, input: &str, want: &str) {
            match parse(input) {
                Ok(q) => self.check(false, || format!("{input:?}: accepted as {q:?}, Go rejects it")),
                Err(err) if exponent_out_of_range(input) => {
                    self.check(err == ExponentOutOfRange, || format!("{input:?}: {err:?}, want ExponentOutOfRange"));
                }
                Err(err) => {
                    let got = err.to_string();
                    self.check(got == want, || format!("{input:?}: error {got:?}, Go's {want:?}"));
                }
            }
        }

        /// An input Go never returns on: we must reject it. (Rejecting it promptly is held by
        /// `huge_exponents_cost_nothing` from the representation, not from a clock, which a
        /// loaded machine makes flaky.)
        fn hang(&mut self, input: &str) {
            let result = parse(input);
            let want = if exponent_out_of_range(input) { ExponentOutOfRange } else { Unevaluable };
            self.check(result.as_ref().err() == Some(&want), || format!("{input:?}: {result:?}, want {want:?}"));
        }
    }

    #[test]
    fn quantity_json_vectors() {
        let v = load("quantity.json");
        let mut tally = Tally::default();
        for rec in v["valid"].as_array().unwrap() {
            tally.valid(rec);
        }
        for rec in v["invalid_detail"].as_array().unwrap() {
            tally.invalid(str_field(rec, "in").unwrap(), str_field(rec, "error_text").unwrap());
        }
        let detailed: Vec<&str> =
            v["invalid_detail"].as_array().unwrap().iter().filter_map(|r| str_field(r, "in")).collect();
        for input in v["invalid"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()) {
            tally.check(detailed.contains(&input), || format!("{input:?}: invalid without detail"));
        }
        for input in v["hang"]["inputs"].as_array().unwrap() {
            tally.hang(input.as_str().unwrap());
        }
        for rec in v["json_unmarshal"]["cases"].as_array().unwrap() {
            // UnmarshalJSON: null is zero; else strip the quotes, trim whitespace, ParseQuantity.
            let json = str_field(rec, "json").unwrap().trim();
            let text = json.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(json);
            let got = if json == "null" { Ok("0".to_string()) } else { parse(text.trim()).map(|q| q.canonical()) };
            let want = str_field(rec, "canonical").unwrap_or("0");
            tally.check(got.as_deref() == Ok(want), || format!("json {json:?}: {got:?}, want {want:?}"));
        }
        for pair in v["cmp"].as_array().unwrap() {
            let (a, b) = (str_field(pair, "a").unwrap(), str_field(pair, "b").unwrap());
            let sign = pair.get("sign_after_parse").unwrap_or(&pair["sign"]).as_i64().unwrap();
            let want = sign.cmp(&0);
            match (parse(a), parse(b)) {
                (Ok(qa), Ok(qb)) => {
                    tally.check(qa.cmp(&qb) == want, || format!("cmp({a}, {b}) = {:?}, want {want:?}", qa.cmp(&qb)));
                    tally.check(qb.cmp(&qa) == want.reverse(), || format!("cmp({b}, {a}) is not the reverse"));
                    tally.check((qa == qb) == want.is_eq(), || format!("{a} == {b} disagrees with cmp"));
                }
                (ra, rb) => tally.check(false, || format!("cmp({a}, {b}): {ra:?}, {rb:?}")),
            }
        }
        for rec in v["derived_subtle"]["cases"].as_array().unwrap() {
            match str_field(rec, "error") {
                Some(want) => tally.invalid(str_field(rec, "in").unwrap(), want),
                None => tally.valid(rec),
            }
        }
        tally.assert_clean("quantity.json");
    }

    #[test]
    fn quantity_grid_vectors() {
        let v = load("quantity_grid.json");
        let records = v["records"].as_array().unwrap();
        assert_eq!(records.len(), 7797, "quantity_grid.json record count");
        let mut tally = Tally::default();
        let mut cached_spellings = 0;
        for rec in records {
            let input = str_field(rec, "in").unwrap();
            match str_field(rec, "status").unwrap() {
                "ok" if exponent_out_of_range(input) => {
                    tally.deliberate += 1;
                    let result = parse(input);
                    tally.check(result.as_ref().err() == Some(&ExponentOutOfRange), || {
                        format!("{input:?}: {result:?}, want ExponentOutOfRange")
                    });
                }
                "ok" => {
                    let q = match parse(input) {
                        Ok(q) => q,
                        Err(err) => {
                            tally.check(false, || format!("{input:?}: rejected ({err}), Go accepts it"));
                            continue;
                        }
                    };
                    let (got, want) = (value_me(&q), str_field(rec, "value_me").unwrap());
                    tally.check(got == want, || format!("{input:?}: value {got}, corpus {want}"));
                    let (got, want) = (format!("{:?}", q.format()), str_field(rec, "format").unwrap());
                    tally.check(got == want, || format!("{input:?}: format {got}, corpus {want}"));
                    let got = q.canonical();
                    let want = str_field(rec, "derived_canonical_after_upstream_fix_140459")
                        .or_else(|| str_field(rec, "derived_canonical"))
                        .unwrap();
                    if got == want {
                        tally.checked += 1;
                    } else if want == input || matches!(parse(want), Err(ExponentOutOfRange | Unevaluable)) {
                        // Go's String() returns the cached input spelling, or (at the exponent
                        // limits) a form `parse` rejects; ours must be a spelling of the same
                        // value that reads back.
                        cached_spellings += 1;
                        let back = parse(&got);
                        tally.check(back.as_ref() == Ok(&q), || {
                            format!("{input:?}: canonical {got:?} reads back as {back:?}")
                        });
                    } else {
                        tally.check(false, || format!("{input:?}: canonical {got:?}, want {want:?}"));
                    }
                }
                "err" => {
                    let result = parse(input);
                    let ok = match &result {
                        Err(ExponentOutOfRange) => exponent_out_of_range(input),
                        Err(FormatWrong | Numeric | Suffix) => !exponent_out_of_range(input),
                        _ => false,
                    };
                    tally.check(ok, || format!("{input:?}: {result:?}, Go rejects it"));
                }
                "hang" => tally.hang(input),
                status => tally.check(false, || format!("{input:?}: unknown status {status}")),
            }
        }
        eprintln!("quantity_grid.json: {cached_spellings} canonical forms checked by round trip (Go caches the input)");
        tally.assert_clean("quantity_grid.json");
    }

    #[test]
    fn parses_values_formats_and_canonical_forms() {
        let cases = [
            // (input, value, format, canonical)
            ("500m", "5e-1", DecimalSI, "500m"),
            ("1", "1e0", DecimalSI, "1"),
            ("+1", "1e0", DecimalSI, "1"),
            ("1.500", "15e-1", DecimalSI, "1500m"),
            ("1000m", "1e0", DecimalSI, "1"),
            ("0.1m", "1e-4", DecimalSI, "100u"),
            ("1Gi", "1073741824e0", BinarySI, "1Gi"),
            ("1024Mi", "1073741824e0", BinarySI, "1Gi"),
            ("1.5Gi", "1610612736e0", BinarySI, "1536Mi"),
            ("-1.5Gi", "-1610612736e0", BinarySI, "-1536Mi"),
            ("0.5Ki", "512e0", BinarySI, "512"),
            ("1.1Gi", "11811160064e-1", BinarySI, "1181116006400m"),
            ("0.0000000001Ki", "103e-9", DecimalSI, "103n"),
            ("8Ei", "9223372036854775807e0", BinarySI, "9223372036854775807"),
            ("-20Ei", "-9223372036854775807e0", BinarySI, "-9223372036854775807"),
            ("7Ei", "8070450532247928832e0", BinarySI, "7Ei"),
            ("0.0000000001", "1e-9", DecimalSI, "1n"),
            ("-0.0000000001", "-1e-9", DecimalSI, "-1n"),
            ("3.001n", "4e-9", DecimalSI, "4n"),
            ("0.999999999999", "1e0", DecimalSI, "1"),
            ("1e3", "1e3", DecimalExponent, "1e3"),
            ("1e+3", "1e3", DecimalExponent, "1e3"),
            ("1.5e-9", "2e-9", DecimalExponent, "2e-9"),
            ("1e14", "1e14", DecimalExponent, "100e12"),
            ("0.5e0", "5e-1", DecimalExponent, "500e-3"),
            ("1e1000", "1e1000", DecimalExponent, "10e999"),
            ("1e-1000", "1e-9", DecimalExponent, "1e-9"),
            ("1000E", "1e21", DecimalSI, "1e21"),
            ("1E", "1e18", DecimalSI, "1E"),
            ("1e2147483647", "1e2147483647", DecimalExponent, "10e2147483646"),
            ("-123456789e2147483000", "-123456789e2147483000", DecimalExponent, "-12345678900e2147482998"),
            // Go's int32 scale wraps on these; we read them as Go does.
            ("0.0001e-2147483647", "1e2147483645", DecimalExponent, "100e2147483643"),
            ("1.25e-2147483647", "125e2147483647", DecimalExponent, "1250e2147483646"),
            // A bare sign, dot or suffix reads as zero.
            ("0", "0", DecimalSI, "0"),
            ("-0", "0", DecimalSI, "0"),
            (".", "0", DecimalSI, "0"),
            ("-", "0", DecimalSI, "0"),
            ("m", "0", DecimalSI, "0"),
            ("Ki", "0", BinarySI, "0"),
            ("Ti", "0", BinarySI, "0"),
            ("e3", "0", DecimalExponent, "0"),
            ("e-9", "0", DecimalExponent, "0"),
            ("0e-2147483647", "0", DecimalExponent, "0"),
            ("0.000Pi", "0", BinarySI, "0"),
        ];
        for (input, value, format, canonical) in cases {
            let q = parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(value_me(&q), value, "{input:?} value");
            assert_eq!(q.format(), format, "{input:?} format");
            assert_eq!(q.canonical(), canonical, "{input:?} canonical");
            assert_eq!(input.parse::<Quantity>(), Ok(q), "{input:?} via FromStr");
        }
    }

    #[test]
    fn rejects_like_go_and_out_of_range_exponents() {
        let fraction_past_rescale_limit = format!("0.{}1", "0".repeat((1 << 20) + 9));
        let cases = [
            ("", FormatWrong),
            (" 1", FormatWrong),
            ("1 ", FormatWrong),
            ("1.1.M", FormatWrong),
            ("1KI", FormatWrong),
            ("1e3k", FormatWrong),
            ("１", FormatWrong),
            ("1e", Suffix),
            ("1e+", Suffix),
            ("1K", Suffix),
            ("1ki", Suffix),
            ("++1", Suffix),
            ("1e9223372036854775808", Suffix),
            ("Pi", Numeric),
            (".Ei", Numeric),
            ("e-10", Numeric),
            (".e-10", Numeric),
            ("1e2147483648", ExponentOutOfRange),
            ("1e-2147483648", ExponentOutOfRange),
            ("0e-2147483648", ExponentOutOfRange),
            ("e-2147483648", ExponentOutOfRange),
            ("1e4294967297", ExponentOutOfRange),
            ("1e9223372036854775807", ExponentOutOfRange),
            ("1e-9223372036854775808", ExponentOutOfRange),
            ("1e-2147483646", Unevaluable),
            ("+0.5e-2147483647", Unevaluable),
            ("1000000000000000000e2147483000", Unevaluable),
            (fraction_past_rescale_limit.as_str(), Unevaluable),
        ];
        for (input, want) in cases {
            let short: String = input.chars().take(40).collect();
            assert_eq!(parse(input).err(), Some(want), "{short:?}");
        }
        let fraction_within_rescale_limit = format!("0.{}1", "0".repeat(1000));
        assert_eq!(value_me(&parse(&fraction_within_rescale_limit).unwrap()), "1e-9");
    }

    #[test]
    fn error_texts_are_go_texts() {
        assert_eq!(
            FormatWrong.to_string(),
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
        );
        assert_eq!(Numeric.to_string(), "unable to parse numeric part of quantity");
        assert_eq!(Suffix.to_string(), "unable to parse quantity's suffix");
        assert!(ExponentOutOfRange.to_string().contains("-2147483647 and 2147483647"));
    }

    #[test]
    fn orders_by_value_as_a_total_order() {
        let inputs = [
            "-9Ei",
            "-1Gi",
            "-1G",
            "-1",
            "-500m",
            "-1n",
            "0",
            "-0",
            "0Ki",
            "1n",
            "0.1n",
            "1u",
            "1m",
            "500m",
            "0.5",
            "1",
            "1000m",
            "1.0000000001",
            "1Ki",
            "1024",
            "1k",
            "1e3",
            "1M",
            "1Mi",
            "1G",
            "1Gi",
            "1E",
            "1Ei",
            "8Ei",
            "9Ei",
            "1e1000",
            "1e2147483647",
            "0.0001e-2147483647",
            "-1e2147483647",
        ];
        let qs: Vec<Quantity> = inputs.iter().map(|s| parse(s).unwrap()).collect();
        for (i, a) in qs.iter().enumerate() {
            for (j, b) in qs.iter().enumerate() {
                assert_eq!(a.cmp(b), b.cmp(a).reverse(), "antisymmetry {} {}", inputs[i], inputs[j]);
                assert_eq!(a == b, a.cmp(b).is_eq(), "eq {} {}", inputs[i], inputs[j]);
                for (k, c) in qs.iter().enumerate() {
                    if a <= b && b <= c {
                        assert!(a <= c, "transitivity {} {} {}", inputs[i], inputs[j], inputs[k]);
                    }
                }
            }
        }
        let pairs = [
            ("1000m", "1", Ordering::Equal),
            ("1Ki", "1024", Ordering::Equal),
            ("1k", "1Ki", Ordering::Less),
            ("1.5Gi", "1536Mi", Ordering::Equal),
            ("9Ei", "8Ei", Ordering::Equal),
            ("1e1000", "9Ei", Ordering::Greater),
            ("-1e1000", "-1", Ordering::Less),
            ("0.1n", "1n", Ordering::Equal),
            ("1.0000000001", "1.000000001", Ordering::Equal),
            ("1e2147483647", "1e2147483646", Ordering::Greater),
            ("999e2147483644", "1e2147483647", Ordering::Less),
        ];
        for (a, b, want) in pairs {
            assert_eq!(parse(a).unwrap().cmp(&parse(b).unwrap()), want, "{a} vs {b}");
        }
    }

    /// Huge exponents stay exponents: the digits are never expanded (which would take
    /// gigabytes), so the canonical form is short and the digits stay inline.
    #[test]
    fn huge_exponents_cost_nothing() {
        for input in ["1e2147483647", "-9e2147483647", "0.000000001e2147483647", "1e2147483000", "7e-2147483000"] {
            if let Ok(q) = parse(input) {
                assert!(q.canonical().len() < 32, "{input}");
                assert!(matches!(q.digits, Digits::Inline { .. }), "{input}");
            }
        }
    }

    #[test]
    fn ordinary_quantities_stay_inline() {
        for input in ["500m", "1Gi", "8Ei", "-9223372036854775807.123456789", "1.1Gi"] {
            let q = parse(input).unwrap();
            assert!(matches!(q.digits, Digits::Inline { .. }), "{input}");
        }
        let long = format!("1{}1", "0".repeat(40));
        assert_eq!(value_me(&parse(&long).unwrap()), format!("1{}1e0", "0".repeat(40)));
        let long_binary = format!("1{}Ki", "0".repeat(40));
        assert_eq!(value_me(&parse(&long_binary).unwrap()), "9223372036854775807e0");
    }

    #[test]
    fn scaled_values_round_up_away_from_zero() {
        let cases = [
            ("500m", -3, Some(500)),
            ("500m", 0, Some(1)),
            ("-500m", 0, Some(-1)),
            ("1.9995", -3, Some(2000)),
            ("0", 0, Some(0)),
            ("1n", 0, Some(1)),
            ("2Mi", 0, Some(2097152)),
            ("9223372036854775807", 0, Some(i64::MAX)),
            ("-9223372036854775807", 0, Some(-i64::MAX)),
            ("9223372036854775808", 0, None),
            ("9223372036854775806.5", 0, Some(i64::MAX)),
            ("1e30", 0, None),
            ("1e2147483647", -3, None),
        ];
        for (input, scale, want) in cases {
            assert_eq!(parse(input).unwrap().scaled_value(scale), want, "{input} at 10^{scale}");
        }
    }
}
