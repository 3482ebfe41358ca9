//! Dates of birth, in the formats people type.
//!
//! Accepted (case-insensitive, surrounding spaces ignored):
//! - year first: `1984-03-07`, `1984/3/7`, `1984.03.07`, `1984 Mar 7`;
//! - US month first: `03/07/1984`, `3/7/1984`, `3-7-84`, `3.7.84`;
//! - digits only: `19840307` (YYYYMMDD), `03071984` (MMDDYYYY), `030784`
//!   (MMDDYY); the two eight-digit forms can never both be valid, since a year
//!   from 1900 starts with `19` or `20`, which is no month;
//! - a month name: `March 7, 1984`, `Mar 7th 1984`, `7 Mar 1984`, `07-MAR-84`.
//!
//! Decisions:
//! - Slashed and dashed numeric dates are month first (US). `13/07/1984` is an
//!   error, not silently read day first: the linkage engine already tolerates a
//!   transposed day and month, and a guess here would hide a data-entry error.
//! - A two-digit year is the most recent one that does not put the date in the
//!   future: on 2026-11-23, `3/7/84` is 1984, `3/7/25` is 2025 and `12/31/26`
//!   is 1926.
//! - Dates in the future or before 1900 are rejected.
//!
//! Parsing reads the bytes once into at most three tokens and never allocates
//! unless it reports an error.

use chrono::{Datelike, NaiveDate};

/// Normalizes a date of birth typed in any of the formats above; `today` is
/// the caller's clock (a date after it is an error). The ISO form of the
/// result (`1984-03-07`) normalizes to the same date.
pub fn normalize_dob(input: &str, today: NaiveDate) -> Result<NaiveDate, String> {
    let parts = parse_parts(input.trim())?;
    let year = match parts.year {
        Year::Full(year) => year,
        Year::TwoDigit(yy) => resolve_two_digit_year(yy, parts.month, parts.day, today),
    };
    if !(1..=12).contains(&parts.month) {
        return Err("the month does not exist (months are 1 to 12)".to_owned());
    }
    let date = i32::try_from(year)
        .ok()
        .and_then(|year| NaiveDate::from_ymd_opt(year, parts.month, parts.day))
        .ok_or_else(|| "the day does not exist in that month".to_owned())?;
    if date > today {
        return Err("the date of birth is in the future".to_owned());
    }
    if date.year() < 1900 {
        return Err("the date of birth is before 1900".to_owned());
    }
    Ok(date)
}

#[derive(Clone, Copy)]
enum Year {
    Full(u32),
    TwoDigit(u32),
}

struct Parts {
    year: Year,
    month: u32,
    day: u32,
}

/// The latest of 19yy and 20yy that does not put month/day after `today`.
fn resolve_two_digit_year(yy: u32, month: u32, day: u32, today: NaiveDate) -> u32 {
    let this_century = 2000 + yy;
    // Compare as (year, month, day) so that an impossible day still resolves
    // and is then reported as impossible rather than as "in the future".
    let today = (today.year(), today.month(), today.day());
    match i32::try_from(this_century) {
        Ok(year) if (year, month, day) <= today => this_century,
        _ => 1900 + yy,
    }
}

#[derive(Clone, Copy)]
enum Token {
    /// A run of digits: its value (saturating) and its length.
    Number { value: u32, digits: usize },
    /// A month name, as its number.
    Month(u32),
}

const UNRECOGNIZED: &str = "is not a date in a recognized format (use YYYY-MM-DD or MM/DD/YYYY)";

fn parse_parts(input: &str) -> Result<Parts, String> {
    if input.is_empty() {
        return Err("is empty".to_owned());
    }
    let tokens = tokenize(input).ok_or_else(|| UNRECOGNIZED.to_owned())?;
    let number = |token: Token| match token {
        Token::Number { value, digits } => Some((value, digits)),
        Token::Month(_) => None,
    };
    let parts = match tokens {
        [Some(only), None, None] => digits_only(only),
        [Some(Token::Month(month)), Some(first), Some(second)] => {
            // `March 7, 1984`: day then year.
            number(first)
                .zip(number(second))
                .and_then(|(day, year)| with_year(year, month, small(day)?))
        }
        [Some(first), Some(Token::Month(month)), Some(second)] => {
            number(first)
                .zip(number(second))
                .and_then(|(first, second)| {
                    if first.1 == 4 {
                        // `1984 Mar 7`
                        with_year(first, month, small(second)?)
                    } else {
                        // `7 Mar 1984`
                        with_year(second, month, small(first)?)
                    }
                })
        }
        [Some(first), Some(second), Some(third)] => {
            let (first, second, third) = (number(first), number(second), number(third));
            first
                .zip(second)
                .zip(third)
                .and_then(|((first, second), third)| {
                    if first.1 == 4 {
                        // ISO order: 1984-03-07.
                        with_year(first, small(second)?, small(third)?)
                    } else {
                        // US order: 03/07/1984.
                        with_year(third, small(first)?, small(second)?)
                    }
                })
        }
        _ => None,
    };
    parts.ok_or_else(|| UNRECOGNIZED.to_owned())
}

/// The value of a day or month token: one or two digits.
fn small((value, digits): (u32, usize)) -> Option<u32> {
    (digits <= 2).then_some(value)
}

/// Builds parts from a year token `(value, digits)`, or `None` when the year
/// has neither two nor four digits.
fn with_year((value, digits): (u32, usize), month: u32, day: u32) -> Option<Parts> {
    let year = match digits {
        4 => Year::Full(value),
        2 => Year::TwoDigit(value),
        _ => return None,
    };
    Some(Parts { year, month, day })
}

/// `19840307`, `03071984`, `030784`.
fn digits_only(token: Token) -> Option<Parts> {
    let Token::Number { value, digits } = token else {
        return None;
    };
    match digits {
        8 if value / 10_000 >= 1900 => Some(Parts {
            year: Year::Full(value / 10_000),
            month: value / 100 % 100,
            day: value % 100,
        }),
        8 => Some(Parts {
            year: Year::Full(value % 10_000),
            month: value / 1_000_000,
            day: value / 10_000 % 100,
        }),
        6 => Some(Parts {
            year: Year::TwoDigit(value % 100),
            month: value / 10_000,
            day: value / 100 % 100,
        }),
        _ => None,
    }
}

/// Splits a date into at most three tokens: runs of digits (an ordinal ending
/// such as `7th` belongs to its number) and month names, separated by spaces,
/// `/`, `-`, `.` or `,`. `None` for anything else.
fn tokenize(input: &str) -> Option<[Option<Token>; 3]> {
    let bytes = input.as_bytes();
    let mut tokens = [None; 3];
    let mut count = 0;
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        let token = match bytes[i] {
            b' ' | b'/' | b'-' | b'.' | b',' => {
                i += 1;
                continue;
            }
            b'0'..=b'9' => {
                let mut value: u32 = 0;
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    value = value
                        .saturating_mul(10)
                        .saturating_add(u32::from(bytes[i] - b'0'));
                    i += 1;
                }
                let digits = i - start;
                // An ordinal ending: 1st, 2nd, 3rd, 7th.
                if let Some(ending) = bytes.get(i..i + 2)
                    && ["st", "nd", "rd", "th"]
                        .iter()
                        .any(|e| ending.eq_ignore_ascii_case(e.as_bytes()))
                {
                    i += 2;
                }
                Token::Number { value, digits }
            }
            b if b.is_ascii_alphabetic() => {
                while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                    i += 1;
                }
                Token::Month(month_number(&input[start..i])?)
            }
            _ => return None,
        };
        // A letter glued to a number (`7x`) or a fourth token is not a date.
        if i < bytes.len()
            && bytes[i].is_ascii_alphanumeric()
            && matches!(token, Token::Number { .. })
        {
            return None;
        }
        *tokens.get_mut(count)? = Some(token);
        count += 1;
    }
    Some(tokens)
}

/// The number of a month named in English, in full or abbreviated.
fn month_number(name: &str) -> Option<u32> {
    const MONTHS: [(&str, &str); 12] = [
        ("jan", "january"),
        ("feb", "february"),
        ("mar", "march"),
        ("apr", "april"),
        ("may", "may"),
        ("jun", "june"),
        ("jul", "july"),
        ("aug", "august"),
        ("sep", "september"),
        ("oct", "october"),
        ("nov", "november"),
        ("dec", "december"),
    ];
    let matches = |(short, long): &(&str, &str)| {
        name.eq_ignore_ascii_case(short)
            || name.eq_ignore_ascii_case(long)
            || (*short == "sep" && name.eq_ignore_ascii_case("sept"))
    };
    let index = MONTHS.iter().position(matches)?;
    u32::try_from(index + 1).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 23).expect("valid date")
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("valid date")
    }

    fn dob(input: &str) -> Result<NaiveDate, String> {
        normalize_dob(input, today())
    }

    #[test]
    fn every_typed_format_gives_the_same_date() {
        let expected = date(1984, 3, 7);
        for input in [
            "1984-03-07",
            "1984-3-7",
            "1984/03/07",
            "1984.03.07",
            "03/07/1984",
            "3/7/1984",
            "3-7-84",
            "03.07.84",
            "3/7/84",
            "19840307",
            "03071984",
            "030784",
            "March 7, 1984",
            "march 7 1984",
            "Mar 7th, 1984",
            "MAR. 07, 84",
            "7 Mar 1984",
            "07-MAR-1984",
            "7 March 84",
            "1984 Mar 7",
            "  1984-03-07  ",
        ] {
            assert_eq!(dob(input), Ok(expected), "{input}");
        }
        assert_eq!(dob("Sept 30, 2001"), Ok(date(2001, 9, 30)));
        assert_eq!(dob("1st Jan 2000"), Ok(date(2000, 1, 1)));
    }

    #[test]
    fn two_digit_years_are_never_in_the_future() {
        assert_eq!(dob("3/7/25"), Ok(date(2025, 3, 7)));
        assert_eq!(dob("11/23/26"), Ok(date(2026, 11, 23)));
        assert_eq!(dob("11/24/26"), Ok(date(1926, 11, 24)));
        assert_eq!(dob("12/31/26"), Ok(date(1926, 12, 31)));
        assert_eq!(dob("1/1/00"), Ok(date(2000, 1, 1)));
        assert_eq!(dob("2/29/00"), Ok(date(2000, 2, 29)));
        assert_eq!(dob("6/1/99"), Ok(date(1999, 6, 1)));
    }

    #[test]
    fn impossible_dates_are_rejected_clearly() {
        for (input, fragment) in [
            ("1984-02-30", "day does not exist"),
            ("02/30/1984", "day does not exist"),
            ("1983-02-29", "day does not exist"),
            ("04/31/1984", "day does not exist"),
            ("00/10/1984", "month does not exist"),
            ("13/07/1984", "month does not exist"),
            ("1984-13-01", "month does not exist"),
            ("1984-01-00", "day does not exist"),
            ("19841301", "month does not exist"),
        ] {
            let problem = dob(input).expect_err(input);
            assert!(problem.contains(fragment), "{input}: {problem}");
        }
        // Leap years are real.
        assert_eq!(dob("2000-02-29"), Ok(date(2000, 2, 29)));
        assert_eq!(dob("02/29/1984"), Ok(date(1984, 2, 29)));
    }

    #[test]
    fn future_and_ancient_dates_are_rejected() {
        assert!(dob("2026-11-24").expect_err("future").contains("future"));
        assert!(dob("2099-01-01").expect_err("future").contains("future"));
        assert_eq!(dob("2026-11-23"), Ok(today()));
        assert!(
            dob("1899-12-31")
                .expect_err("ancient")
                .contains("before 1900")
        );
        assert_eq!(dob("1900-01-01"), Ok(date(1900, 1, 1)));
    }

    #[test]
    fn garbage_is_unrecognized() {
        for input in [
            "",
            "  ",
            "1984",
            "03/1984",
            "03/07",
            "1984-03-07T00:00:00",
            "3/7/984",
            "123/7/1984",
            "Smarch 7, 1984",
            "March 1984",
            "7 1984 March",
            "1/2/3/4",
            "03\u{2044}07\u{2044}1984",
            "99999999999999999999",
            "7x 1984 1",
            "١٩٨٤-٠٣-٠٧",
        ] {
            assert!(dob(input).is_err(), "{input:?}");
        }
    }

    #[test]
    fn iso_output_is_a_fixed_point() {
        let first = dob("March 7, 84").expect("valid");
        assert_eq!(dob(&first.to_string()), Ok(first));
    }
}
