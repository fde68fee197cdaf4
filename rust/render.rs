//! The exposition's hot loop: the sample lines of one family's series, each
//! line a cached prefix (sample name and label text, made once per series by
//! `pepperpy_core.exposition`) followed by the value, read from the metric
//! here. `pepperpy_core._fallback.metrics.RegistryCore._samples` writes the
//! same bytes in Python; the differential tests compare the two.

use std::fmt::Write;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};

use crate::metrics::{Counter, Gauge, Histogram};

/// The lines of `children` (an iterable of (label values, metric) pairs) of a
/// family of `kind` ("counter", "gauge" or "histogram"); `lines` caches each
/// series' prefixes, and `make(values)` makes those of a series not yet
/// cached (None: the series is left out).
pub(crate) fn samples(
    kind: &str,
    children: &Bound<'_, PyAny>,
    lines: &Bound<'_, PyDict>,
    make: &Bound<'_, PyAny>,
) -> PyResult<String> {
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
    let mut out = String::new();
    // How many series are coming, if the iterable knows: once the first is
    // written, room for all of them is made at once.
    let expected = children.len().unwrap_or(0);
    let mut integers = itoa::Buffer::new();
    let mut sized = false;
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
                let value = metric.cast::<Counter>()?.get().current();
                push_prefix(&mut out, prefixes, 0)?;
                out.push_str(integers.format(value));
                out.push('\n');
            }
            Kind::Gauge => {
                let value = metric.cast::<Gauge>()?.get().current();
                push_prefix(&mut out, prefixes, 0)?;
                push_number(&mut out, value);
                out.push('\n');
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
                    push_prefix(&mut out, prefixes, at)?;
                    out.push_str(integers.format(*total));
                    out.push('\n');
                }
                push_prefix(&mut out, prefixes, lines_here - 2)?;
                push_number(&mut out, sum);
                out.push('\n');
                push_prefix(&mut out, prefixes, lines_here - 1)?;
                let count = buckets.last().map_or(0, |(_, total)| *total);
                out.push_str(integers.format(count));
                out.push('\n');
            }
        }
        if !sized && expected > 1 && !out.is_empty() {
            sized = true;
            out.reserve(out.len() * (expected - 1) + out.len() / 8);
        }
    }
    Ok(out)
}

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

fn push_prefix(out: &mut String, prefixes: &Bound<'_, PyTuple>, at: usize) -> PyResult<()> {
    out.push_str(&prefixes.get_item(at)?.cast::<PyString>()?.to_cow()?);
    Ok(())
}

/// `value` as `pepperpy_core.exposition.number` writes a float: `+Inf` and
/// `-Inf`, else Python's `repr(float)` (the shortest text that reads back as
/// the same float; positional from 1e-4 up to 1e16, else `1.5e-05`, `1e+16`).
pub(crate) fn push_number(out: &mut String, value: f64) {
    if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
        return;
    }
    if value.is_nan() {
        out.push_str("nan");
        return;
    }
    // Rust's shortest round-trip digits, as d.ddde<exp>: the digits Python's
    // repr picks too; only the layout differs.
    let scientific = format!("{value:e}");
    let (mantissa, exponent) = scientific
        .split_once('e')
        .unwrap_or((scientific.as_str(), "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let mantissa = match mantissa.strip_prefix('-') {
        Some(rest) => {
            out.push('-');
            rest
        }
        None => mantissa,
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if (-4..16).contains(&exponent) {
        if exponent >= 0 {
            let whole = usize::try_from(exponent).unwrap_or(0) + 1;
            if digits.len() <= whole {
                out.push_str(&digits);
                out.extend(std::iter::repeat_n('0', whole - digits.len()));
                out.push_str(".0");
            } else {
                out.push_str(&digits[..whole]);
                out.push('.');
                out.push_str(&digits[whole..]);
            }
        } else {
            out.push_str("0.");
            out.extend(std::iter::repeat_n(
                '0',
                usize::try_from(-exponent - 1).unwrap_or(0),
            ));
            out.push_str(&digits);
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let sign = if exponent < 0 { '-' } else { '+' };
        let _ = write!(out, "e{sign}{:02}", exponent.unsigned_abs());
    }
}
