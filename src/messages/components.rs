//! Message components (action rows, buttons, string selects): validation. How they are stored is
//! [`crate::convert::encode_components`].
//!
//! Rules: at most 5 action rows at the top level; a row holds 1-5 buttons or exactly one select,
//! never another row; button styles are 1-5 and a link button (5) has a URL and no `custom_id`
//! while the others have a `custom_id` and no URL; a select has 1-25 options with distinct values
//! and `0 ≤ min_values ≤ max_values ≤ options`, `max_values ≥ 1`.

use std::collections::HashSet;

use crate::accounts::rules;
use crate::error::{Error, Result};
use crate::proto::guildhall::v1::{self as pb, ComponentType};

/// Most action rows in one message.
pub const MAX_ROWS: usize = 5;
/// Most buttons in one row.
pub const MAX_PER_ROW: usize = 5;
/// Most options in one select.
pub const MAX_OPTIONS: usize = 25;
/// Longest button label, characters (Discord's limit, so bots written for it fit).
pub const BUTTON_LABEL_MAX: usize = 80;
/// Longest `custom_id` of a button or select, characters: the bot's own key, echoed back.
pub const CUSTOM_ID_MAX: usize = 100;
/// Longest select placeholder, characters.
pub const PLACEHOLDER_MAX: usize = 150;
/// Longest select option label, value or description, characters.
pub const OPTION_TEXT_MAX: usize = 100;

fn text_len(field: &str, value: &str, min: usize, max: usize) -> Result<()> {
    let len = value.chars().count();
    if len < min || len > max {
        return Err(Error::invalid(
            field,
            format!("must be {min}-{max} characters (got {len})"),
        ));
    }
    Ok(())
}

fn check_button(at: &str, b: &pb::Component) -> Result<()> {
    if !(1..=5).contains(&b.style) {
        return Err(Error::invalid(
            format!("{at}.style"),
            "must be 1 (primary) to 5 (link)",
        ));
    }
    text_len(&format!("{at}.label"), &b.label, 0, BUTTON_LABEL_MAX)?;
    if b.label.is_empty() && b.emoji.is_empty() {
        return Err(Error::invalid(
            format!("{at}.label"),
            "a button needs a label or an emoji",
        ));
    }
    if b.style == 5 {
        rules::http_url(&b.url).map_err(|rule| Error::invalid(format!("{at}.url"), rule))?;
        if !b.custom_id.is_empty() {
            return Err(Error::invalid(
                format!("{at}.custom_id"),
                "a link button has no custom_id",
            ));
        }
    } else {
        text_len(&format!("{at}.custom_id"), &b.custom_id, 1, CUSTOM_ID_MAX)?;
        if !b.url.is_empty() {
            return Err(Error::invalid(
                format!("{at}.url"),
                "only link buttons (style 5) have a url",
            ));
        }
    }
    if !b.components.is_empty() || !b.options.is_empty() {
        return Err(Error::invalid(
            format!("{at}.components"),
            "a button has no children or options",
        ));
    }
    Ok(())
}

fn check_select(at: &str, s: &pb::Component) -> Result<()> {
    text_len(&format!("{at}.custom_id"), &s.custom_id, 1, CUSTOM_ID_MAX)?;
    text_len(
        &format!("{at}.placeholder"),
        &s.placeholder,
        0,
        PLACEHOLDER_MAX,
    )?;
    if s.options.is_empty() || s.options.len() > MAX_OPTIONS {
        return Err(Error::invalid(
            format!("{at}.options"),
            format!("must have 1-{MAX_OPTIONS} options"),
        ));
    }
    let mut values = HashSet::new();
    for (i, o) in s.options.iter().enumerate() {
        text_len(
            &format!("{at}.options[{i}].label"),
            &o.label,
            1,
            OPTION_TEXT_MAX,
        )?;
        text_len(
            &format!("{at}.options[{i}].value"),
            &o.value,
            1,
            OPTION_TEXT_MAX,
        )?;
        text_len(
            &format!("{at}.options[{i}].description"),
            &o.description,
            0,
            OPTION_TEXT_MAX,
        )?;
        if !values.insert(o.value.as_str()) {
            return Err(Error::invalid(
                format!("{at}.options[{i}].value"),
                "values must be distinct",
            ));
        }
    }
    let n = i32::try_from(s.options.len()).unwrap_or(i32::MAX);
    if s.min_values < 0 || s.max_values < 1 || s.min_values > s.max_values || s.max_values > n {
        return Err(Error::invalid(
            format!("{at}.max_values"),
            format!("need 0 <= min_values <= max_values <= options ({n}) and max_values >= 1"),
        ));
    }
    Ok(())
}

/// Checks a message's components.
pub fn validate(items: &[pb::Component]) -> Result<()> {
    if items.len() > MAX_ROWS {
        return Err(Error::invalid(
            "components",
            format!("at most {MAX_ROWS} action rows"),
        ));
    }
    for (r, row) in items.iter().enumerate() {
        let at = format!("components[{r}]");
        if row.r#type != ComponentType::ActionRow as i32 {
            return Err(Error::invalid(
                format!("{at}.type"),
                "top-level components must be action rows",
            ));
        }
        if row.components.is_empty() || row.components.len() > MAX_PER_ROW {
            return Err(Error::invalid(
                format!("{at}.components"),
                format!("a row holds 1-{MAX_PER_ROW} components"),
            ));
        }
        let has_select = row
            .components
            .iter()
            .any(|c| c.r#type == ComponentType::StringSelect as i32);
        if has_select && row.components.len() > 1 {
            return Err(Error::invalid(
                format!("{at}.components"),
                "a select must be alone in its row",
            ));
        }
        for (i, child) in row.components.iter().enumerate() {
            let at = format!("{at}.components[{i}]");
            match ComponentType::try_from(child.r#type) {
                Ok(ComponentType::Button) => check_button(&at, child)?,
                Ok(ComponentType::StringSelect) => check_select(&at, child)?,
                _ => {
                    return Err(Error::invalid(
                        format!("{at}.type"),
                        "must be a button (2) or a string select (3)",
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn button(style: i32, custom_id: &str, url: &str) -> pb::Component {
        pb::Component {
            r#type: ComponentType::Button as i32,
            style,
            label: "Go".into(),
            custom_id: custom_id.into(),
            url: url.into(),
            ..Default::default()
        }
    }

    fn row(children: Vec<pb::Component>) -> pb::Component {
        pb::Component {
            r#type: ComponentType::ActionRow as i32,
            components: children,
            ..Default::default()
        }
    }

    fn select(min: i32, max: i32, values: &[&str]) -> pb::Component {
        pb::Component {
            r#type: ComponentType::StringSelect as i32,
            custom_id: "pick".into(),
            min_values: min,
            max_values: max,
            options: values
                .iter()
                .map(|v| pb::SelectOption {
                    label: (*v).into(),
                    value: (*v).into(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn valid_components_pass_and_roundtrip() {
        let items = vec![
            row(vec![
                button(1, "ok", ""),
                button(5, "", "https://example.org"),
            ]),
            row(vec![select(1, 2, &["a", "b"])]),
        ];
        validate(&items).expect("valid");
        assert_eq!(
            crate::convert::decode_components(&crate::convert::encode_components(&items)),
            items
        );
        assert!(crate::convert::decode_components(&[]).is_empty());
    }

    #[test]
    fn each_rule_is_enforced() {
        let cases: Vec<(Vec<pb::Component>, &str)> = vec![
            (vec![button(1, "x", "")], "components[0].type"),
            (vec![row(vec![])], "components[0].components"),
            (vec![row(vec![button(6, "x", "")])], "style"),
            (vec![row(vec![button(0, "x", "")])], "style"),
            (vec![row(vec![button(5, "", "")])], "url"),
            (
                vec![row(vec![button(5, "x", "https://e.org")])],
                "custom_id",
            ),
            (vec![row(vec![button(1, "", "")])], "custom_id"),
            (vec![row(vec![button(2, "x", "https://e.org")])], "url"),
            (
                vec![row(vec![row(vec![button(1, "x", "")])])],
                "must be a button",
            ),
            (
                vec![row(vec![select(1, 1, &["a"]), button(1, "x", "")])],
                "alone",
            ),
            (vec![row(vec![select(2, 1, &["a", "b"])])], "max_values"),
            (vec![row(vec![select(0, 3, &["a", "b"])])], "max_values"),
            (vec![row(vec![select(0, 0, &["a"])])], "max_values"),
            (vec![row(vec![select(1, 1, &[])])], "options"),
            (vec![row(vec![select(1, 1, &["a", "a"])])], "distinct"),
            (
                (0..6).map(|_| row(vec![button(1, "x", "")])).collect(),
                "at most 5",
            ),
        ];
        for (items, needle) in cases {
            let err = validate(&items).expect_err(needle).to_string();
            assert!(err.contains(needle), "{err} should mention {needle}");
        }
    }
}
