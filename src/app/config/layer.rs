//! Flags > config file > defaults, in the spirit of trippy's `cfg_layer`: each setting is
//! resolved by one call, so adding a flag is one line here and one in the table of defaults.

use std::str::FromStr;

use color_eyre::eyre::Result;

use crate::app::exit::UsageError;

/// The flag if given, else the file's value, else the default.
pub fn layer<T>(flag: Option<T>, file: Option<T>, default: T) -> T {
    flag.or(file).unwrap_or(default)
}

/// The flag if given, else the file's value (no default).
pub fn layer_opt<T>(flag: Option<T>, file: Option<T>) -> Option<T> {
    flag.or(file)
}

/// A switch: on when the flag is given or the file turns it on.
pub fn layer_switch(flag: bool, file: Option<bool>) -> bool {
    flag || file.unwrap_or(false)
}

/// The flag if given, else the file's text parsed like the flag (an error names the key).
pub fn layer_parsed<T: FromStr>(flag: Option<T>, key: &str, file: Option<&str>) -> Result<Option<T>>
where
    T::Err: std::fmt::Display,
{
    match (flag, file) {
        (Some(v), _) => Ok(Some(v)),
        (None, Some(text)) => parse_in_config(key, text).map(Some),
        (None, None) => Ok(None),
    }
}

/// A value of the config file parsed like its flag.
pub fn parse_in_config<T: FromStr>(key: &str, text: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    text.parse::<T>()
        .map_err(|e| UsageError(format!("--config: {key} = {text:?}: {e}")).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        assert_eq!(layer(Some(1), Some(2), 3), 1);
        assert_eq!(layer(None, Some(2), 3), 2);
        assert_eq!(layer(None, None, 3), 3);
        assert!(layer_switch(false, Some(true)));
        assert!(!layer_switch(false, None));
        assert_eq!(layer_parsed::<u32>(None, "k", Some("7")).unwrap(), Some(7));
        assert_eq!(
            layer_parsed::<u32>(Some(1), "k", Some("x")).unwrap(),
            Some(1)
        );
        let e = layer_parsed::<u32>(None, "max-runs", Some("x")).unwrap_err();
        assert!(
            e.to_string().starts_with("--config: max-runs = \"x\""),
            "{e}"
        );
    }
}
