//! Discrete Laplace (two-sided geometric) noise from a cryptographically secure
//! generator, for the differential-privacy option.
//!
//! `P(X = k) ∝ exp(-ε|k| / Δ)` for integer `k`: the difference of two
//! independent geometric variables with `p = exp(-ε/Δ)` (Inusah and Kozubowski).
//! Integer noise on integer counts keeps the output integral and avoids the
//! floating-point holes of a rounded continuous Laplace (Mironov 2012); each
//! geometric variable is drawn by inversion from a 53-bit uniform, so its tail
//! is cut near `2^-53` — a bias far below the noise itself, noted here rather
//! than hidden.
//!
//! The generator is `StdRng` (`ChaCha12`) seeded per table from the gateway's
//! [`Randomness`] (the operating system's generator), never a thread RNG:
//! noise an attacker could predict would protect nothing. Only a test passes
//! a seeded double.

use rand::Rng as _;
use rand::rngs::StdRng;

use crate::randomness::{Randomness, RandomnessFailed, seeded_rng};

/// Draws discrete Laplace noise of scale `sensitivity / epsilon`.
pub(crate) struct DiscreteLaplace {
    rng: StdRng,
    /// `ln p`, where `p = exp(-ε/Δ)`: negative.
    ln_p: f64,
}

impl DiscreteLaplace {
    /// Noise for a query of L1 `sensitivity` at `epsilon`, seeded from
    /// `randomness`.
    pub(crate) fn new(
        epsilon: f64,
        sensitivity: u32,
        randomness: &dyn Randomness,
    ) -> Result<Self, RandomnessFailed> {
        Ok(Self::with_rng(
            epsilon,
            sensitivity,
            seeded_rng(randomness)?,
        ))
    }

    pub(crate) fn with_rng(epsilon: f64, sensitivity: u32, rng: StdRng) -> Self {
        Self {
            rng,
            ln_p: -epsilon / f64::from(sensitivity.max(1)),
        }
    }

    /// A geometric variable: failures before the first success, success
    /// probability `1 - p`.
    fn geometric(&mut self) -> i64 {
        // u in (0, 1]: never ln(0).
        #[expect(
            clippy::cast_precision_loss,
            reason = "a 53-bit integer is exact in an f64"
        )]
        let u = ((self.rng.random::<u64>() >> 11) + 1) as f64 / (1_u64 << 53) as f64;
        let g = (u.ln() / self.ln_p).floor();
        #[expect(
            clippy::cast_possible_truncation,
            reason = "clamped: a draw beyond 2^40 is impossible at any configured epsilon"
        )]
        let g = g.clamp(0.0, 1e12) as i64;
        g
    }

    /// One draw of the noise.
    pub(crate) fn sample(&mut self) -> i64 {
        self.geometric() - self.geometric()
    }

    /// `count` plus noise, floored at zero (post-processing: free).
    pub(crate) fn noisy(&mut self, count: u64) -> u64 {
        let noisy = i64::try_from(count).unwrap_or(i64::MAX) + self.sample();
        u64::try_from(noisy).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng as _;
    use rand::rngs::StdRng;

    use super::DiscreteLaplace;

    /// The noise has the distribution it claims: mean 0, variance
    /// `2p / (1-p)^2`, `P(0) = (1-p)/(1+p)`, and tails `P(|X| >= k) =
    /// 2 p^k / (1+p)`.
    #[test]
    fn noise_has_the_expected_scale() {
        for (epsilon, sensitivity) in [(0.5, 1), (1.0, 1), (0.1, 1), (1.0, 20)] {
            let mut noise =
                DiscreteLaplace::with_rng(epsilon, sensitivity, StdRng::seed_from_u64(42));
            let n = 200_000_i32;
            let draws: Vec<i64> = (0..n).map(|_| noise.sample()).collect();
            let p = (-epsilon / f64::from(sensitivity)).exp();
            #[expect(clippy::cast_precision_loss, reason = "test statistics")]
            let mean = draws.iter().sum::<i64>() as f64 / f64::from(n);
            #[expect(clippy::cast_precision_loss, reason = "test statistics")]
            let variance = draws
                .iter()
                .map(|x| (*x as f64 - mean).powi(2))
                .sum::<f64>()
                / f64::from(n);
            let expected_variance = 2.0 * p / (1.0 - p).powi(2);
            let sd = expected_variance.sqrt();
            // Mean within 5 standard errors; variance within 5%.
            assert!(
                mean.abs() < 5.0 * sd / f64::from(n).sqrt(),
                "ε={epsilon}: mean {mean}"
            );
            assert!(
                (variance / expected_variance - 1.0).abs() < 0.05,
                "ε={epsilon}, Δ={sensitivity}: variance {variance}, expected {expected_variance}"
            );
            let zeros = draws.iter().filter(|x| **x == 0).count();
            #[expect(clippy::cast_precision_loss, reason = "test statistics")]
            let p0 = zeros as f64 / f64::from(n);
            let expected_p0 = (1.0 - p) / (1.0 + p);
            assert!(
                (p0 - expected_p0).abs() < 0.01,
                "ε={epsilon}: P(0) {p0}, expected {expected_p0}"
            );
            let k = (2.0 / (1.0 - p)).ceil();
            #[expect(clippy::cast_possible_truncation, reason = "small")]
            let beyond = draws.iter().filter(|x| x.abs() >= k as i64).count();
            #[expect(clippy::cast_precision_loss, reason = "test statistics")]
            let tail = beyond as f64 / f64::from(n);
            let expected_tail = 2.0 * p.powf(k) / (1.0 + p);
            assert!(
                (tail - expected_tail).abs() < 0.01,
                "ε={epsilon}: P(|X|>={k}) {tail}, expected {expected_tail}"
            );
        }
    }

    #[test]
    fn noisy_zeros_are_floored_and_sometimes_positive() {
        let mut noise = DiscreteLaplace::with_rng(0.5, 1, StdRng::seed_from_u64(1));
        let draws: Vec<u64> = (0..10_000).map(|_| noise.noisy(0)).collect();
        assert!(draws.contains(&0));
        assert!(draws.iter().any(|d| *d > 0));
        assert!(draws.iter().all(|d| *d < 1_000));
    }
}
