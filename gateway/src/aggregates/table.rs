//! One month's table: its categories, its (possibly noised) interior counts,
//! the suppressed cube with its margins, the medians, and the response rows.
//! Pure computation over what was read: the same month read twice gives the
//! same table (suppression has no randomness), which is what lets a settled
//! month be served identically to every asker.

use std::collections::{BTreeSet, HashMap};

use serde_json::{Map, Value, json};

use super::request::invalid;
use super::suppression::Cube;
use super::{AggregateError, AggregateRequest, MAX_CELLS, Month, MonthData};
use crate::store::aggregates::{GroupCount, GroupMedian};

/// Each grouping's categories for one month: the fixed list, or the codes
/// present in the month's settled referrals (sorted). A month's table depends
/// on nothing but the month, so the range it is asked in does not change it.
pub(super) fn categories(
    request: &AggregateRequest,
    data: &MonthData,
) -> Result<Vec<Vec<String>>, AggregateError> {
    let categories: Vec<Vec<String>> = request
        .group_by
        .iter()
        .enumerate()
        .map(|(k, dimension)| {
            dimension.fixed_categories().unwrap_or_else(|| {
                let seen: BTreeSet<&str> =
                    data.counts.iter().map(|g| g.values[k].as_str()).collect();
                seen.into_iter().map(str::to_owned).collect()
            })
        })
        .collect();
    let sizes: Vec<usize> = categories.iter().map(Vec::len).collect();
    if Cube::len_with_margins(&sizes) > MAX_CELLS {
        return Err(invalid(
            "group_by",
            format!("the table would have more than {MAX_CELLS} cells a month; group by fewer"),
        ));
    }
    Ok(categories)
}

fn positions(categories: &[Vec<String>]) -> Vec<HashMap<&str, usize>> {
    categories
        .iter()
        .map(|c| c.iter().enumerate().map(|(i, v)| (v.as_str(), i)).collect())
        .collect()
}

fn coords_of(positions: &[HashMap<&str, usize>], values: &[String]) -> Option<Vec<usize>> {
    values
        .iter()
        .zip(positions)
        .map(|(v, p)| p.get(v.as_str()).copied())
        .collect()
}

/// The interior cells' counts, row-major over `categories`.
pub(super) fn interior_counts(categories: &[Vec<String>], groups: &[GroupCount]) -> Vec<u64> {
    let sizes: Vec<usize> = categories.iter().map(Vec::len).collect();
    let positions = positions(categories);
    let mut counts = vec![0_u64; sizes.iter().product()];
    for group in groups {
        // A stored code outside a fixed list (none today) is left out.
        if let Some(coords) = coords_of(&positions, &group.values) {
            let flat = coords.iter().zip(&sizes).fold(0, |acc, (c, s)| acc * s + c);
            counts[flat] += u64::try_from(group.count).unwrap_or(0);
        }
    }
    counts
}

/// The cube of `counts` (interior cells, row-major) with its margins,
/// suppressed at `threshold`.
pub(super) fn cube(categories: &[Vec<String>], counts: &[u64], threshold: u64) -> Cube {
    let sizes: Vec<usize> = categories.iter().map(Vec::len).collect();
    let mut cube = Cube::new(sizes.clone());
    let unflat = |mut n: usize| -> Vec<usize> {
        let mut coords = vec![0; sizes.len()];
        for k in (0..sizes.len()).rev() {
            coords[k] = n % sizes[k];
            n /= sizes[k];
        }
        coords
    };
    for (n, count) in counts.iter().enumerate() {
        if *count > 0 {
            cube.add(&unflat(n), *count);
        }
    }
    cube.suppress(threshold);
    cube
}

/// The medians (minutes, one decimal) of the interior cells with at least
/// `threshold` contacted referrals, by cube index.
pub(super) fn medians(
    categories: &[Vec<String>],
    cube: &Cube,
    medians: &[GroupMedian],
    threshold: u64,
) -> HashMap<usize, f64> {
    let positions = positions(categories);
    let mut out = HashMap::new();
    for median in medians {
        if u64::try_from(median.contacted).unwrap_or(0) < threshold || median.middle_count == 0 {
            continue;
        }
        if let Some(coords) = coords_of(&positions, &median.values) {
            let index = cube.index_of(&coords);
            #[expect(
                clippy::cast_precision_loss,
                reason = "delays in microseconds fit an f64"
            )]
            let minutes = median.middle_sum as f64 / median.middle_count as f64 / 60_000_000.0;
            out.insert(index, (minutes * 10.0).round() / 10.0);
        }
    }
    out
}

/// Appends the month's rows; returns how many are withheld.
pub(super) fn rows_of(
    request: &AggregateRequest,
    categories: &[Vec<String>],
    month: Month,
    cube: &Cube,
    medians: &HashMap<usize, f64>,
    rows: &mut Vec<Map<String, Value>>,
) -> usize {
    let mut withheld = 0;
    for index in 0..cube.len() {
        let coords = cube.coords(index);
        let mut row = Map::new();
        row.insert("month".to_owned(), json!(month.to_string()));
        for (k, dimension) in request.group_by.iter().enumerate() {
            let value = if cube.is_total(&coords, k) {
                Value::Null
            } else {
                json!(categories[k][coords[k]])
            };
            row.insert(dimension.as_str().to_owned(), value);
        }
        let suppressed = cube.is_withheld(index);
        withheld += usize::from(suppressed);
        row.insert(
            "count".to_owned(),
            if suppressed {
                Value::Null
            } else {
                json!(cube.count(index))
            },
        );
        row.insert("suppressed".to_owned(), json!(suppressed));
        if !suppressed && let Some(median) = medians.get(&index) {
            row.insert("median_minutes_to_first_contact".to_owned(), json!(median));
        }
        rows.push(row);
    }
    withheld
}
