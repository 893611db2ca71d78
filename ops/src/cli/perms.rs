//! `chmod`, `chown`, `whoami` and `admin group`: permissions from the command line. With -R
//! the walk is iterative (a tree may be deeper than any stack) and changes every entry, the
//! top first.
use super::output::{self, escape_name, say};
use super::paths;
use serde_json::json;
use shale_client::Client;

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// Parses an octal mode (`644`, `0755`, `1777`).
pub fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o1777 && !digits.is_empty() => Ok(m),
        _ => Err(format!(
            "bad mode {s:?}: octal digits up to 1777 (e.g. 644, 0750, 1777)"
        )),
    }
}

/// Parses `OWNER`, `OWNER:GROUP` or `:GROUP`.
pub fn parse_owner(s: &str) -> Result<(Option<String>, Option<String>), String> {
    let (o, g) = match s.split_once(':') {
        Some((o, g)) => (o, Some(g)),
        None => (s, None),
    };
    let o = (!o.is_empty()).then(|| o.to_string());
    let g = g.filter(|g| !g.is_empty()).map(str::to_string);
    if o.is_none() && g.is_none() {
        return Err(format!("bad owner {s:?}: OWNER, OWNER:GROUP or :GROUP"));
    }
    Ok((o, g))
}

/// What to change on each path.
pub enum Change {
    Mode(u32),
    Owner(Option<String>, Option<String>),
}

/// Applies `change` to every path (globs expanded), and with `recursive` to everything under
/// the directories among them.
pub async fn change(c: &Client, patterns: &[String], change: &Change, recursive: bool) -> Res {
    for top in paths::expand_all(c, patterns).await? {
        let mut stack = vec![top];
        while let Some(p) = stack.pop() {
            let st = match change {
                Change::Mode(m) => c.chmod(&p, *m).await,
                Change::Owner(o, g) => c.chown(&p, o.as_deref(), g.as_deref()).await,
            }
            .map_err(|e| format!("{p}: {e}"))?;
            if recursive && st.is_dir {
                for e in c.list(&p).await.map_err(|e| format!("{p}: {e}"))? {
                    stack.push(paths::join(&p, &e.name));
                }
            }
        }
    }
    Ok(())
}

pub async fn whoami(c: &Client, as_json: bool) -> Res {
    let me = c.who_am_i().await?;
    if as_json {
        output::json(&json!({
            "user": me.user,
            "role": me.role,
            "superuser": me.superuser,
            "groups": me.groups,
        }));
        return Ok(());
    }
    let mut line = format!("{} ({}", escape_name(&me.user), me.role);
    if me.superuser {
        line.push_str(", superuser");
    }
    line.push(')');
    if !me.groups.is_empty() {
        line.push_str(&format!(" groups: {}", me.groups.join(",")));
    }
    say!("{line}");
    Ok(())
}

pub async fn groups(c: &Client, as_json: bool) -> Res {
    let groups = c.groups().await?;
    if as_json {
        output::json(&json!(groups));
        return Ok(());
    }
    if groups.is_empty() {
        say!("(no supplementary groups: every user is in the group of its own name)");
    }
    for (g, members) in groups {
        say!("{g}: {}", members.join(" "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_owners_parse() {
        assert_eq!(parse_mode("644"), Ok(0o644));
        assert_eq!(parse_mode("0750"), Ok(0o750));
        assert_eq!(parse_mode("1777"), Ok(0o1777));
        for bad in ["", "8", "u+x", "2777", "77777"] {
            assert!(parse_mode(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_owner("alice"), Ok((Some("alice".into()), None)));
        assert_eq!(
            parse_owner("alice:staff"),
            Ok((Some("alice".into()), Some("staff".into())))
        );
        assert_eq!(parse_owner(":staff"), Ok((None, Some("staff".into()))));
        assert!(parse_owner(":").is_err());
    }
}
