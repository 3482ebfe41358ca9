//! Small-cell suppression with complementary suppression, over one table and
//! all of its margins.
//!
//! A table of `d` dimensions is held as a cube in which every dimension has one
//! extra index, its *total*: the cell `(d1, total)` is the sum over the second
//! dimension, `(total, total)` the grand total. Every margin a requester could
//! learn from this table (or from a coarser table of the same month, which is
//! one of these margins) is therefore a cell of the cube, and protected like one.
//!
//! # The rule
//! 1. **Primary**: every count from 1 to `threshold - 1` is withheld, margins
//!    included. Zeros are published.
//! 2. **Complementary**, over every *line* — the cells along one dimension with
//!    the others fixed (interior or total), plus the total they add up to — until
//!    no line changes (a fixed point across all margins):
//!    - total published: the withheld cells of the line must be none, or at
//!      least two whose sum is at least `threshold` and more than their number
//!      (so the equation "these add up to s" pins none of them: not even "all
//!      ones");
//!    - total withheld: at least one of the line's cells must be withheld too
//!      (else the total is the sum of what is published).
//!
//!    A line that breaks the rule gets its smallest published non-zero cell
//!    withheld, or, when none is left, its total.
//! 3. **Audit**: lines that each obey the rule can still pin a cell together
//!    (in a table of three groupings, or a withheld cell that is no part of a
//!    cycle of withheld cells). So at each fixed point the table is attacked
//!    the way a requester would: Gauss-Jordan elimination over every line's
//!    equation ([`Cube::pinned_cells`]); beside each pinned cell the smallest
//!    published non-zero cell of its lines (or of the lines of the withheld
//!    cells tied to it; a zero as a last resort, so a requester cannot count
//!    on a withheld cell holding at least 1) is withheld, and step 2 runs
//!    again. The
//!    elimination is dense, which is why a table is bounded
//!    ([`super::MAX_CELLS`]).
//!
//! The attacker in the tests solves every linear combination of the published
//! lines (exact elimination) and tightens bounds line by line, and must not pin
//! a withheld cell.

/// One table and its margins, with what is withheld.
#[derive(Debug, Clone)]
pub(crate) struct Cube {
    /// Each dimension's number of categories; index `sizes[k]` is its total.
    sizes: Vec<usize>,
    /// Row-major strides over `sizes[k] + 1` positions per dimension.
    strides: Vec<usize>,
    counts: Vec<u64>,
    withheld: Vec<bool>,
}

impl Cube {
    /// A cube of the given interior sizes, all zero.
    pub(crate) fn new(sizes: Vec<usize>) -> Self {
        let mut strides = vec![0; sizes.len()];
        let mut len = 1;
        for k in (0..sizes.len()).rev() {
            strides[k] = len;
            len *= sizes[k] + 1;
        }
        Self {
            sizes,
            strides,
            counts: vec![0; len],
            withheld: vec![false; len],
        }
    }

    /// How many cells, margins included: `Π (size + 1)`.
    pub(crate) fn len_with_margins(sizes: &[usize]) -> usize {
        sizes
            .iter()
            .try_fold(1_usize, |n, s| n.checked_mul(s + 1))
            .unwrap_or(usize::MAX)
    }

    pub(crate) fn dims(&self) -> usize {
        self.sizes.len()
    }

    pub(crate) fn len(&self) -> usize {
        self.counts.len()
    }

    /// The cell at `coords` (`sizes[k]` meaning the total).
    pub(crate) fn index_of(&self, coords: &[usize]) -> usize {
        self.index(coords)
    }

    fn index(&self, coords: &[usize]) -> usize {
        coords.iter().zip(&self.strides).map(|(c, s)| c * s).sum()
    }

    /// The coordinates of cell `index` (`sizes[k]` meaning the total).
    pub(crate) fn coords(&self, index: usize) -> Vec<usize> {
        self.strides
            .iter()
            .zip(&self.sizes)
            .map(|(stride, size)| (index / stride) % (size + 1))
            .collect()
    }

    /// Whether dimension `k` of `coords` is the total.
    pub(crate) fn is_total(&self, coords: &[usize], k: usize) -> bool {
        coords[k] == self.sizes[k]
    }

    /// Adds `count` to the interior cell `coords` and to every margin over it.
    pub(crate) fn add(&mut self, coords: &[usize], count: u64) {
        let d = self.dims();
        // Each subset of dimensions replaced by its total: 2^d cells.
        for mask in 0..(1_usize << d) {
            let index: usize = (0..d)
                .map(|k| {
                    let c = if mask & (1 << k) == 0 {
                        coords[k]
                    } else {
                        self.sizes[k]
                    };
                    c * self.strides[k]
                })
                .sum();
            self.counts[index] += count;
        }
    }

    pub(crate) fn count(&self, index: usize) -> u64 {
        self.counts[index]
    }

    pub(crate) fn is_withheld(&self, index: usize) -> bool {
        self.withheld[index]
    }

    /// Every line: the member cells along one dimension, then their total.
    fn lines(&self) -> Vec<Vec<usize>> {
        let mut lines = Vec::new();
        for k in 0..self.dims() {
            for index in 0..self.len() {
                let coords = self.coords(index);
                if !self.is_total(&coords, k) {
                    continue;
                }
                let base = index - coords[k] * self.strides[k];
                let mut line: Vec<usize> = (0..self.sizes[k])
                    .map(|c| base + c * self.strides[k])
                    .collect();
                line.push(index);
                lines.push(line);
            }
        }
        lines
    }

    /// Withholds every small count and enough others that none can be worked
    /// out (see the module docs). Returns how many cells are withheld.
    pub(crate) fn suppress(&mut self, threshold: u64) -> usize {
        for (count, withheld) in self.counts.iter().zip(&mut self.withheld) {
            *withheld = (1..threshold).contains(count);
        }
        let lines = self.lines();
        loop {
            let mut changed = false;
            for line in &lines {
                if let Some(next) = self.complement_for(line, threshold) {
                    self.withheld[next] = true;
                    changed = true;
                }
            }
            if changed {
                continue;
            }
            // Lines obeying the rule one by one can still pin a cell together
            // (a withheld cell that is no part of a cycle of withheld cells):
            // withhold one more cell beside each pinned one, and start over.
            let pinned = self.pinned_cells();
            if !pinned.is_empty() {
                let mut lines_of = vec![Vec::new(); self.len()];
                for (n, line) in lines.iter().enumerate() {
                    for &c in line {
                        lines_of[c].push(n);
                    }
                }
                for cell in pinned {
                    if let Some(next) = self.widen(cell, &lines, &lines_of) {
                        self.withheld[next] = true;
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
        self.withheld.iter().filter(|w| **w).count()
    }

    /// The equations an attacker has: for each line, its cells add up to its
    /// total, published values moved to the right-hand side. The unknowns are
    /// the withheld cells, in index order.
    fn equations(&self) -> (Vec<usize>, Vec<(Vec<f64>, f64)>) {
        let unknowns: Vec<usize> = (0..self.len()).filter(|&i| self.withheld[i]).collect();
        let mut rows = Vec::new();
        for line in self.lines() {
            let Some((&total, cells)) = line.split_last() else {
                continue;
            };
            let mut row = vec![0.0; unknowns.len()];
            let mut rhs = 0.0;
            for (i, sign) in cells.iter().map(|&c| (c, 1.0)).chain([(total, -1.0)]) {
                match unknowns.binary_search(&i) {
                    Ok(col) => row[col] += sign,
                    #[expect(clippy::cast_precision_loss, reason = "counts are far below 2^52")]
                    Err(_) => rhs -= sign * self.counts[i] as f64,
                }
            }
            if row.iter().any(|v| *v != 0.0) {
                rows.push((row, rhs));
            }
        }
        (unknowns, rows)
    }

    /// The withheld cells some linear combination of the published lines pins
    /// to one value: after Gauss-Jordan elimination, a pivot whose row has no
    /// other (free) unknown. The coefficients are small integers, so `f64` with
    /// a tolerance is exact enough to tell zero from non-zero.
    pub(crate) fn pinned_cells(&self) -> Vec<usize> {
        let (unknowns, mut rows) = self.equations();
        let mut pivots = Vec::new();
        let mut r = 0;
        for col in 0..unknowns.len() {
            let Some(p) = (r..rows.len()).find(|&i| rows[i].0[col].abs() > 1e-9) else {
                continue;
            };
            rows.swap(r, p);
            let lead = rows[r].0[col];
            for v in &mut rows[r].0 {
                *v /= lead;
            }
            rows[r].1 /= lead;
            let pivot = rows[r].clone();
            for (i, row) in rows.iter_mut().enumerate() {
                if i != r && row.0[col].abs() > 1e-12 {
                    let f = row.0[col];
                    for (v, p) in row.0.iter_mut().zip(&pivot.0).skip(col) {
                        *v -= f * p;
                    }
                    row.1 -= f * pivot.1;
                }
            }
            pivots.push((col, r));
            r += 1;
            if r == rows.len() {
                break;
            }
        }
        pivots
            .into_iter()
            .filter(|&(col, row)| {
                rows[row]
                    .0
                    .iter()
                    .enumerate()
                    .all(|(c, v)| c == col || v.abs() < 1e-9)
            })
            .map(|(col, _)| unknowns[col])
            .collect()
    }

    /// The cell to withhold so that `pinned` is no longer pinned: the
    /// smallest published non-zero cell in its lines, or else in the lines of
    /// the withheld cells it is tied to (breadth first), or else a zero.
    fn widen(&self, pinned: usize, lines: &[Vec<usize>], lines_of: &[Vec<usize>]) -> Option<usize> {
        let mut seen = vec![false; self.len()];
        let mut frontier = vec![pinned];
        seen[pinned] = true;
        while !frontier.is_empty() {
            let mut next_frontier = Vec::new();
            let mut best: Option<usize> = None;
            for &cell in &frontier {
                for &n in &lines_of[cell] {
                    for &c in &lines[n] {
                        if self.withheld[c] {
                            if !seen[c] {
                                seen[c] = true;
                                next_frontier.push(c);
                            }
                        } else if self.counts[c] > 0
                            && best.is_none_or(|b| (self.counts[c], c) < (self.counts[b], b))
                        {
                            best = Some(c);
                        }
                    }
                }
            }
            if best.is_some() {
                return best;
            }
            frontier = next_frontier;
        }
        lines_of[pinned]
            .iter()
            .flat_map(|&n| lines[n].iter().copied())
            .find(|&c| !self.withheld[c])
    }

    /// The cell to withhold next so that `line` obeys the rule, if it breaks it.
    fn complement_for(&self, line: &[usize], threshold: u64) -> Option<usize> {
        let (&total, cells) = line.split_last()?;
        let (mut hidden, mut hidden_sum) = (0_u64, 0_u64);
        for &c in cells {
            if self.withheld[c] {
                hidden += 1;
                hidden_sum += self.counts[c];
            }
        }
        let safe = if self.withheld[total] {
            hidden >= 1
        } else {
            hidden == 0 || (hidden >= 2 && hidden_sum >= threshold && hidden_sum > hidden)
        };
        if safe {
            return None;
        }
        cells
            .iter()
            .copied()
            .filter(|&c| !self.withheld[c] && self.counts[c] > 0)
            .min_by_key(|&c| (self.counts[c], c))
            .or_else(|| (!self.withheld[total]).then_some(total))
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng as _, SeedableRng as _};

    use super::Cube;

    const T: u64 = 11;

    /// A random table: mostly small counts, some zeros, some large.
    fn random_cube(rng: &mut StdRng, sizes: &[usize]) -> Cube {
        let mut cube = Cube::new(sizes.to_vec());
        let interior: usize = sizes.iter().product();
        for n in 0..interior {
            let mut coords = Vec::with_capacity(sizes.len());
            let mut rest = n;
            for &s in sizes.iter().rev() {
                coords.push(rest % s);
                rest /= s;
            }
            coords.reverse();
            let count = match rng.random_range(0..10) {
                0..=1 => 0,
                2..=5 => rng.random_range(1..T),
                6 => 1,
                _ => rng.random_range(T..80),
            };
            cube.add(&coords, count);
        }
        cube
    }

    /// The withheld cells whose bounds, tightened line by line (each withheld
    /// cell at least 0: the audit may withhold a zero as a last resort), meet.
    fn pinned_by_bounds(cube: &Cube) -> Vec<usize> {
        let len = cube.len();
        let mut lo: Vec<u64> = (0..len)
            .map(|i| {
                if cube.is_withheld(i) {
                    0
                } else {
                    cube.count(i)
                }
            })
            .collect();
        let mut hi: Vec<u64> = (0..len)
            .map(|i| {
                if cube.is_withheld(i) {
                    u64::MAX / 4
                } else {
                    cube.count(i)
                }
            })
            .collect();
        let lines = cube.lines();
        for _ in 0..50 {
            let mut changed = false;
            for line in &lines {
                let (&total, cells) = line.split_last().expect("total");
                let sum_lo: u64 = cells.iter().map(|&c| lo[c]).sum();
                let sum_hi: u64 = cells.iter().map(|&c| hi[c]).fold(0, u64::saturating_add);
                // total within [sum_lo, sum_hi]
                if lo[total] < sum_lo {
                    lo[total] = sum_lo;
                    changed = true;
                }
                if hi[total] > sum_hi {
                    hi[total] = sum_hi;
                    changed = true;
                }
                for &c in cells {
                    let others_lo = sum_lo - lo[c];
                    let others_hi = sum_hi.saturating_sub(hi[c]);
                    let new_hi = hi[total].saturating_sub(others_lo);
                    let new_lo = lo[total].saturating_sub(others_hi);
                    if new_hi < hi[c] {
                        hi[c] = new_hi;
                        changed = true;
                    }
                    if new_lo > lo[c] {
                        lo[c] = new_lo;
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
        (0..len)
            .filter(|&i| cube.is_withheld(i) && lo[i] == hi[i])
            .collect()
    }

    #[test]
    fn no_published_count_is_small() {
        let mut rng = StdRng::seed_from_u64(7);
        for sizes in [vec![], vec![5], vec![4, 6], vec![3, 4, 5], vec![2, 3, 2, 3]] {
            for _ in 0..30 {
                let mut cube = random_cube(&mut rng, &sizes);
                cube.suppress(T);
                for i in 0..cube.len() {
                    assert!(
                        cube.is_withheld(i) || !(1..T).contains(&cube.count(i)),
                        "{sizes:?}: cell {:?} = {} published",
                        cube.coords(i),
                        cube.count(i)
                    );
                }
            }
        }
    }

    #[test]
    fn no_withheld_cell_can_be_recovered_from_published_cells_and_totals() {
        let mut rng = StdRng::seed_from_u64(11);
        for sizes in [
            vec![6],
            vec![4, 6],
            vec![5, 8],
            vec![3, 4, 5],
            vec![2, 3, 2, 3],
        ] {
            for round in 0..40 {
                let mut cube = random_cube(&mut rng, &sizes);
                cube.suppress(T);
                let pinned = cube.pinned_cells();
                assert!(
                    pinned.is_empty(),
                    "{sizes:?} round {round}: linear algebra recovers {:?}",
                    pinned.iter().map(|&i| cube.coords(i)).collect::<Vec<_>>()
                );
                let pinned = pinned_by_bounds(&cube);
                assert!(
                    pinned.is_empty(),
                    "{sizes:?} round {round}: bounds pin {:?}",
                    pinned.iter().map(|&i| cube.coords(i)).collect::<Vec<_>>()
                );
            }
        }
    }

    #[test]
    fn a_lone_small_cell_takes_a_complement_in_each_of_its_lines() {
        // 2 x 3: one small cell at (0, 0).
        let mut cube = Cube::new(vec![2, 3]);
        for (coords, count) in [
            ([0, 0], 3),
            ([0, 1], 20),
            ([0, 2], 30),
            ([1, 0], 40),
            ([1, 1], 50),
            ([1, 2], 60),
        ] {
            cube.add(&coords, count);
        }
        cube.suppress(T);
        let withheld: Vec<Vec<usize>> = (0..cube.len())
            .filter(|&i| cube.is_withheld(i))
            .map(|i| cube.coords(i))
            .collect();
        // The classic rectangle: (0,0) (0,1) (1,0) (1,1).
        assert_eq!(
            withheld,
            vec![vec![0, 0], vec![0, 1], vec![1, 0], vec![1, 1]]
        );
        assert!(cube.pinned_cells().is_empty());
    }

    #[test]
    fn margins_add_up() {
        let mut cube = Cube::new(vec![2, 2]);
        cube.add(&[0, 1], 5);
        cube.add(&[1, 1], 7);
        assert_eq!(cube.count(cube.index(&[2, 1])), 12);
        assert_eq!(cube.count(cube.index(&[0, 2])), 5);
        assert_eq!(cube.count(cube.index(&[2, 2])), 12);
        assert!(cube.is_total(&[2, 0], 0));
    }
}
