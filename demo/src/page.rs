//! The HTML pages productpage renders: small, self-contained (no static assets), and
//! explicit about what is unavailable.

use crate::app::Identity;
use crate::catalog;
use crate::productpage::Gathered;
use serde_json::Value;
use std::fmt::Write;

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:sans-serif;max-width:60em;margin:2em auto;color:#222}\
    .box{border:1px solid #ccc;border-radius:4px;padding:0.5em 1em;margin:1em 0}\
    .unavailable{color:#a00}.muted{color:#777;font-size:small}";

fn head(title: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title>\
         <style>{STYLE}</style></head><body>\n",
        escape(title)
    )
}

pub fn index(id: &Identity) -> String {
    let mut s = head("Simple Bookstore App");
    s.push_str(
        "<h1>Hello! This is a simple bookstore application.</h1>\n\
         <p><a href=\"/productpage?u=normal\">Normal user</a> | \
         <a href=\"/productpage?u=jason\">Test user (jason)</a></p>\n",
    );
    footer(&mut s, id, &[]);
    s
}

pub fn productpage(id: &Identity, g: &Gathered) -> String {
    let mut s = head(catalog::TITLE);
    // Writing to a String cannot fail.
    let _ = writeln!(s, "<h1>{}</h1>", escape(catalog::TITLE));
    if let Some(u) = &g.user {
        let _ = writeln!(s, "<p class=\"muted\">Signed in as {}</p>", escape(u));
    }
    let _ = writeln!(s, "<p>{}</p>", escape(catalog::SUMMARY));
    details(&mut s, &g.details);
    reviews(&mut s, &g.reviews);
    let mut served = Vec::new();
    for v in [&g.details, &g.reviews].into_iter().flatten() {
        served.push(served_label(v));
        if v["ratings"]["service"].is_string() {
            served.push(served_label(&v["ratings"]));
        }
    }
    footer(&mut s, id, &served);
    s
}

fn details(s: &mut String, d: &Result<Value, crate::upstream::Failure>) {
    s.push_str("<div class=\"box\" id=\"details\"><h2>Book Details</h2>\n");
    match d {
        Ok(d) => {
            s.push_str("<dl>");
            for (label, key) in [
                ("Type", "type"),
                ("Pages", "pages"),
                ("Publisher", "publisher"),
                ("Language", "language"),
                ("ISBN-10", "ISBN-10"),
                ("ISBN-13", "ISBN-13"),
            ] {
                let _ = write!(s, "<dt>{label}</dt><dd>{}</dd>", escape(&text(&d[key])));
            }
            s.push_str("</dl>\n");
        }
        Err(_) => s.push_str(
            "<p class=\"unavailable\">Sorry, product details are currently unavailable \
             for this book.</p>\n",
        ),
    }
    s.push_str("</div>\n");
}

fn reviews(s: &mut String, r: &Result<Value, crate::upstream::Failure>) {
    s.push_str("<div class=\"box\" id=\"reviews\"><h2>Book Reviews</h2>\n");
    let Ok(r) = r else {
        s.push_str(
            "<p class=\"unavailable\">Sorry, product reviews are currently unavailable \
             for this book.</p>\n</div>\n",
        );
        return;
    };
    for review in r["reviews"].as_array().into_iter().flatten() {
        let _ = write!(
            s,
            "<blockquote><p>{}</p><small>{}</small>",
            escape(&text(&review["text"])),
            escape(&text(&review["reviewer"]))
        );
        let rating = &review["rating"];
        if let (Some(n), Some(color)) = (rating["stars"].as_u64(), rating["color"].as_str()) {
            let full = "\u{2605}".repeat(n.min(5) as usize);
            let empty = "\u{2606}".repeat(5 - n.min(5) as usize);
            let _ = write!(
                s,
                " <span class=\"stars\" style=\"color:{}\">{full}{empty}</span>",
                escape(color)
            );
        } else if rating.get("error").is_some() {
            s.push_str(
                " <span class=\"unavailable\">Ratings service is currently unavailable</span>",
            );
        }
        s.push_str("</blockquote>\n");
    }
    s.push_str("</div>\n");
}

fn served_label(v: &Value) -> String {
    format!("{} {}", text(&v["service"]), text(&v["version"]))
}

fn footer(s: &mut String, id: &Identity, upstream: &[String]) {
    let mut parts = vec![format!("{} {}", id.service, id.version)];
    parts.extend(upstream.iter().cloned());
    let _ = write!(
        s,
        "<p class=\"muted\" id=\"served-by\">Served by {} (instance {})</p>\n</body></html>\n",
        escape(&parts.join(" \u{b7} ")),
        escape(&id.instance)
    );
}

/// A JSON scalar as display text.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_markup_and_quotes() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
