//! The exposition's hot loop: the sample lines of one family's series, each
//! line a cached prefix (sample name and label text, made once per series by
//! `pepperpy_core.exposition`) followed by the value, read from the metric
//! here. `pepperpy_core._fallback.metrics.RegistryCore._samples` writes the
//! same bytes in Python; the differential tests compare the two.
//!
//! The lines are appended to the caller's list. For a body to send, as UTF-8
//! bytes, at most `FLUSH` bytes (and whole series) per object, written
//! through one buffer that stays in the CPU's cache; the server joins them
//! once per piece it sends, so a scrape's text is not copied through a str,
//! a join and an encode, each into memory fresh from the kernel. For
//! `export()`, as one str, which decoding bytes would only copy again.

use std::fmt::Write;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::metrics::{Counter, Gauge, Histogram};

/// Bytes of lines gathered before they are appended to the output as one
/// bytes object (exceeded only by a series longer than that).
const FLUSH: usize = 64 * 1024;

/// Appends the lines of `children` (an iterable of (label values, metric)
/// pairs) of a family of `kind` ("counter", "gauge" or "histogram") to the
/// list `out`: as bytes objects when `encoded`, else as one str; `lines`
/// caches each series' prefixes, and `make(values)` makes those of a series
/// not yet cached (None: the series is left out). On an error, `out` is left
/// as it was.
pub(crate) fn samples(
    kind: &str,
    children: &Bound<'_, PyAny>,
    lines: &Bound<'_, PyDict>,
    make: &Bound<'_, PyAny>,
    out: &Bound<'_, PyList>,
    encoded: bool,
) -> PyResult<()> {
    let start = out.len();
    let written = write_samples(kind, children, lines, make, out, encoded);
    if written.is_err() && out.len() > start {
        out.del_slice(start, out.len())?;
    }
    written
}

fn write_samples(
    kind: &str,
    children: &Bound<'_, PyAny>,
    lines: &Bound<'_, PyDict>,
    make: &Bound<'_, PyAny>,
    out: &Bound<'_, PyList>,
    encoded: bool,
) -> PyResult<()> {
    let kind = match kind {
        "counter" => Kind::Counter,
        "gauge" => Kind::Gauge,
        "histogram" => Kind::Histogram,
        other => {
            return Err(PyValueError::new_err(format!(
                "no metric kind is called {other:?}"
            )))
        }
    };
    let py = children.py();
    let mut text = if encoded {
        String::with_capacity(FLUSH + FLUSH / 4)
    } else {
        String::new()
    };
    // One str: how many series are coming, if the iterable knows, so that
    // once the first is written, room for all of them is made at once.
    let expected = if encoded {
        0
    } else {
        children.len().unwrap_or(0)
    };
    let mut sized = false;
    let mut integers = itoa::Buffer::new();
    for pair in children.try_iter()? {
        let pair = pair?;
        let pair = pair.cast::<PyTuple>()?;
        let values = pair.get_item(0)?;
        let metric = pair.get_item(1)?;
        let prefixes = match lines.get_item(&values)? {
            Some(found) => found,
            None => {
                let made = make.call1((&values,))?;
                if made.is_none() {
                    continue; // (logged by make)
                }
                lines.set_item(&values, &made)?;
                made
            }
        };
        let prefixes = prefixes.cast::<PyTuple>()?;
        match kind {
            Kind::Counter => {
                let value = metric.cast::<Counter>()?.get().current(py)?;
                push_prefix(&mut text, prefixes, 0)?;
                text.push_str(integers.format(value));
                text.push('\n');
            }
            Kind::Gauge => {
                let value = metric.cast::<Gauge>()?.get().current(py)?;
                push_prefix(&mut text, prefixes, 0)?;
                push_number(&mut text, value);
                text.push('\n');
            }
            Kind::Histogram => {
                let (buckets, sum) = metric.cast::<Histogram>()?.get().exported(py)?;
                let lines_here = prefixes.len();
                if lines_here < 2 {
                    return Err(PyValueError::new_err(
                        "a histogram's series needs its lines",
                    ));
                }
                for (at, (_, total)) in buckets.iter().enumerate().take(lines_here - 2) {
                    push_prefix(&mut text, prefixes, at)?;
                    text.push_str(integers.format(*total));
                    text.push('\n');
                }
                push_prefix(&mut text, prefixes, lines_here - 2)?;
                push_number(&mut text, sum);
                text.push('\n');
                push_prefix(&mut text, prefixes, lines_here - 1)?;
                let count = buckets.last().map_or(0, |(_, total)| *total);
                text.push_str(integers.format(count));
                text.push('\n');
            }
        }
        if encoded && text.len() >= FLUSH {
            out.append(PyBytes::new(py, text.as_bytes()))?;
            text.clear();
        } else if !sized && expected > 1 && !text.is_empty() {
            sized = true;
            text.reserve(text.len() * (expected - 1) + text.len() / 8);
        }
    }
    if text.is_empty() {
        Ok(())
    } else if encoded {
        out.append(PyBytes::new(py, text.as_bytes()))
    } else {
        out.append(text)
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

fn push_prefix(out: &mut String, prefixes: &Bound<'_, PyTuple>, at: usize) -> PyResult<()> {
    out.push_str(
        &prefixes
            .get_borrowed_item(at)?
            .cast::<PyString>()?
            .to_cow()?,
    );
    Ok(())
}

/// `value` as `pepperpy_core.exposition.number` writes a float: `+Inf` and
/// `-Inf`, else Python's `repr(float)` (the shortest text that reads back as
/// the same float, a tie between two such going to the even digit;
/// positional from 1e-4 up to 1e16, else `1.5e-05`, `1e+16`).
pub(crate) fn push_number(out: &mut String, value: f64) {
    if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
        return;
    }
    if value.is_nan() {
        out.push_str("nan");
        return;
    }
    if value.is_sign_negative() {
        out.push('-');
    }
    // Ryu's digits are Python's: the shortest that read back, and of two
    // equally near the even one (Rust's own formatting rounds such a tie
    // up: 70368744177664.625 would be ...664.63, Python writes ...664.62).
    // Only the layout differs, so the digits and the decimal exponent are
    // taken from its text (on the stack: one per series of a histogram).
    let mut buffer = ryu::Buffer::new();
    let text = buffer.format_finite(value.abs());
    let (mantissa, shift) = match text.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (mantissa, exponent.parse::<i32>().unwrap_or(0)),
        None => (text, 0),
    };
    let point = mantissa.find('.').unwrap_or(mantissa.len());
    let mut digits = [0u8; 32];
    let mut count = 0;
    for byte in mantissa.bytes().filter(|b| b.is_ascii_digit()) {
        if let Some(slot) = digits.get_mut(count) {
            *slot = byte;
            count += 1;
        }
    }
    let written = digits.get(..count).unwrap_or(&[]);
    // Leading zeros (0.001) and trailing ones (120.0) are layout, not digits.
    let first = written
        .iter()
        .position(|&d| d != b'0')
        .unwrap_or(count.saturating_sub(1));
    let last = written
        .iter()
        .rposition(|&d| d != b'0')
        .map_or(first + 1, |at| at + 1)
        .max(first + 1);
    let significant = std::str::from_utf8(written.get(first..last).unwrap_or(b"0")).unwrap_or("0");
    let exponent =
        i32::try_from(point).unwrap_or(0) - 1 - i32::try_from(first).unwrap_or(0) + shift;
    // The digits are `lead` (one) followed by `fraction` (those after the point).
    let (lead, fraction) = significant.split_at(significant.len().min(1));
    if (-4..0).contains(&exponent) {
        out.push_str("0.");
        out.extend(std::iter::repeat_n(
            '0',
            usize::try_from(-exponent - 1).unwrap_or(0),
        ));
        out.push_str(lead);
        out.push_str(fraction);
    } else if (0..16).contains(&exponent) {
        // `exponent` of the fraction's digits go before the point.
        let before = usize::try_from(exponent).unwrap_or(0);
        out.push_str(lead);
        if fraction.len() <= before {
            out.push_str(fraction);
            out.extend(std::iter::repeat_n('0', before - fraction.len()));
            out.push_str(".0");
        } else {
            let (whole, rest) = fraction.split_at(before);
            out.push_str(whole);
            out.push('.');
            out.push_str(rest);
        }
    } else {
        out.push_str(lead);
        if !fraction.is_empty() {
            out.push('.');
            out.push_str(fraction);
        }
        let sign = if exponent < 0 { '-' } else { '+' };
        let _ = write!(out, "e{sign}{:02}", exponent.unsigned_abs());
    }
}
