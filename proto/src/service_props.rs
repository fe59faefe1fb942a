//! Blob service properties (Get/Set Blob Service Properties): the logging and metrics settings,
//! CORS rules, default service version, delete retention and static website, kept as Azure
//! returns them. A Set replaces the root elements it carries and keeps the others (Azure's
//! rule); what it carries is checked as Azure checks it before anything changes. The node stores
//! the canonical document this module writes.

use std::fmt::Write;

use crate::error_code::ErrorCode;
use crate::xml::{parse_tree, Element};

/// The root elements, in the order Azure writes them.
const SECTIONS: [&str; 7] = [
    "Logging",
    "HourMetrics",
    "MinuteMetrics",
    "Cors",
    "DefaultServiceVersion",
    "DeleteRetentionPolicy",
    "StaticWebsite",
];

/// The most CORS rules a service holds, as Azure allows.
pub const MAX_CORS_RULES: usize = 5;

const DEFAULTS: &str = "<StorageServiceProperties>\
<Logging><Version>1.0</Version><Read>false</Read><Write>false</Write><Delete>false</Delete><RetentionPolicy><Enabled>false</Enabled></RetentionPolicy></Logging>\
<HourMetrics><Version>1.0</Version><Enabled>false</Enabled><RetentionPolicy><Enabled>false</Enabled></RetentionPolicy></HourMetrics>\
<MinuteMetrics><Version>1.0</Version><Enabled>false</Enabled><RetentionPolicy><Enabled>false</Enabled></RetentionPolicy></MinuteMetrics>\
<Cors/>\
<DeleteRetentionPolicy><Enabled>false</Enabled></DeleteRetentionPolicy>\
<StaticWebsite><Enabled>false</Enabled></StaticWebsite>\
</StorageServiceProperties>";

/// A CORS rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsRule {
    pub origins: Vec<String>,
    pub methods: Vec<String>,
    pub allowed_headers: Vec<String>,
    pub exposed_headers: Vec<String>,
    pub max_age: u32,
}

fn list(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|x| !x.is_empty()).map(str::to_owned).collect()
}

/// A value Azure refuses (a day count out of range, an unknown method).
const NODE: ErrorCode = ErrorCode::InvalidXmlNodeValue;

fn boolean(el: &Element, name: &str, required: bool) -> Result<Option<bool>, ErrorCode> {
    match el.child_text(name).map(str::trim) {
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        None if !required => Ok(None),
        _ => Err(NODE),
    }
}

/// A retention policy: `Enabled`, and `Days` (1 to 365) when enabled.
fn retention(el: &Element) -> Result<(), ErrorCode> {
    if boolean(el, "Enabled", true)? == Some(true) {
        match el.child_text("Days").map(str::trim).and_then(|d| d.parse::<u32>().ok()) {
            Some(1..=365) => {}
            _ => return Err(NODE),
        }
    }
    Ok(())
}

fn check_section(el: &Element) -> Result<(), ErrorCode> {
    match el.name.as_str() {
        "Logging" => {
            for n in ["Read", "Write", "Delete"] {
                boolean(el, n, true)?;
            }
            retention(el.child("RetentionPolicy").ok_or(ErrorCode::InvalidXmlDocument)?)
        }
        "HourMetrics" | "MinuteMetrics" => {
            if boolean(el, "Enabled", true)? == Some(true) {
                boolean(el, "IncludeAPIs", true)?;
            }
            el.child("RetentionPolicy").map_or(Ok(()), retention)
        }
        "Cors" => {
            if el.children.len() > MAX_CORS_RULES || el.children.iter().any(|r| r.name != "CorsRule") {
                return Err(ErrorCode::InvalidXmlDocument);
            }
            for r in &el.children {
                cors_rule(r)?;
            }
            Ok(())
        }
        "DefaultServiceVersion" => {
            let v = el.text.trim();
            let ok = v.len() == 10
                && v.bytes().enumerate().all(|(i, b)| if i == 4 || i == 7 { b == b'-' } else { b.is_ascii_digit() });
            if ok {
                Ok(())
            } else {
                Err(NODE)
            }
        }
        "DeleteRetentionPolicy" => retention(el),
        "StaticWebsite" => boolean(el, "Enabled", true).map(|_| ()),
        _ => Err(ErrorCode::InvalidXmlDocument),
    }
}

fn cors_rule(r: &Element) -> Result<CorsRule, ErrorCode> {
    let field = |n: &str| r.child_text(n).ok_or(ErrorCode::InvalidXmlDocument);
    let rule = CorsRule {
        origins: list(field("AllowedOrigins")?),
        methods: list(field("AllowedMethods")?),
        allowed_headers: list(field("AllowedHeaders")?),
        exposed_headers: list(field("ExposedHeaders")?),
        max_age: field("MaxAgeInSeconds")?.trim().parse().map_err(|_| NODE)?,
    };
    const METHODS: [&str; 8] = ["DELETE", "GET", "HEAD", "MERGE", "POST", "OPTIONS", "PUT", "PATCH"];
    if rule.origins.is_empty() || rule.methods.is_empty() || !rule.methods.iter().all(|m| METHODS.contains(&m.as_str()))
    {
        return Err(NODE);
    }
    // Azure's limits: 64 origins, 64 defined and 2 prefixed headers a list, 256 characters each.
    let long = |v: &[String]| v.iter().any(|x| x.len() > 256);
    let prefixed = |v: &[String]| v.iter().filter(|x| x.ends_with('*') && x.len() > 1).count();
    if rule.origins.len() > 64
        || rule.allowed_headers.len() > 64
        || rule.exposed_headers.len() > 64
        || long(&rule.origins)
        || long(&rule.allowed_headers)
        || long(&rule.exposed_headers)
        || prefixed(&rule.allowed_headers) > 2
        || prefixed(&rule.exposed_headers) > 2
    {
        return Err(NODE);
    }
    Ok(rule)
}

fn write(out: &mut String, el: &Element) {
    if el.children.is_empty() && el.text.is_empty() {
        let _ = write!(out, "<{}/>", el.name);
        return;
    }
    let _ = write!(out, "<{}>", el.name);
    if el.children.is_empty() {
        out.push_str(&quick_xml::escape::escape(el.text.trim()));
    }
    for c in &el.children {
        write(out, c);
    }
    let _ = write!(out, "</{}>", el.name);
}

fn document(root: &Element) -> String {
    let mut out = r#"<?xml version="1.0" encoding="utf-8"?>"#.to_owned();
    write(&mut out, root);
    out
}

fn current(stored: Option<&str>) -> Element {
    stored
        .and_then(|s| parse_tree(s.as_bytes(), "StorageServiceProperties").ok())
        .or_else(|| parse_tree(DEFAULTS.as_bytes(), "StorageServiceProperties").ok())
        .unwrap_or_default()
}

/// A Set Blob Service Properties body applied to the stored document: the new document to
/// store, or the error that leaves it unchanged.
pub fn merge(stored: Option<&str>, body: &[u8]) -> Result<String, ErrorCode> {
    let new = parse_tree(body, "StorageServiceProperties")?;
    for section in &new.children {
        if !SECTIONS.contains(&section.name.as_str()) {
            return Err(ErrorCode::InvalidXmlDocument);
        }
        check_section(section)?;
    }
    let mut doc = current(stored);
    for section in new.children {
        match doc.children.iter_mut().find(|c| c.name == section.name) {
            Some(old) => *old = section,
            None => doc.children.push(section),
        }
    }
    doc.children.sort_by_key(|c| SECTIONS.iter().position(|s| *s == c.name));
    Ok(document(&doc))
}

/// Get Blob Service Properties' body.
pub fn get(stored: Option<&str>) -> String {
    document(&current(stored))
}

/// The CORS rules of a stored document, in order.
pub fn cors_rules(stored: Option<&str>) -> Vec<CorsRule> {
    let doc = current(stored);
    doc.child("Cors").map(|c| c.children.iter().filter_map(|r| cors_rule(r).ok()).collect()).unwrap_or_default()
}

impl CorsRule {
    fn allows_origin(&self, origin: &str) -> bool {
        self.origins.iter().any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
    }

    fn allows_header(&self, header: &str) -> bool {
        self.allowed_headers.iter().any(|a| match a.strip_suffix('*') {
            Some(prefix) => header.len() >= prefix.len() && header[..prefix.len()].eq_ignore_ascii_case(prefix),
            None => a.eq_ignore_ascii_case(header),
        })
    }

    /// Whether the rule names every origin (`*`): answers then say `*`, and no credentials.
    pub fn any_origin(&self) -> bool {
        self.origins.iter().any(|o| o == "*")
    }
}

/// The first rule that lets `origin` use `method` with `headers` (Azure evaluates rules in
/// order and takes the first match).
pub fn cors_match<'a>(rules: &'a [CorsRule], origin: &str, method: &str, headers: &[&str]) -> Option<&'a CorsRule> {
    rules.iter().find(|r| {
        r.allows_origin(origin) && r.methods.iter().any(|m| m == method) && headers.iter().all(|h| r.allows_header(h))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_first_rule_matching_origin_method_and_every_header_applies() {
        let rule = |origins: &str, methods: &str, headers: &str| CorsRule {
            origins: list(origins),
            methods: list(methods),
            allowed_headers: list(headers),
            exposed_headers: vec![],
            max_age: 1,
        };
        let rules = [rule("https://a.example", "GET", "x-ms-meta-*,content-type"), rule("*", "GET,PUT", "*")];
        let got = |o: &str, m: &str, h: &[&str]| cors_match(&rules, o, m, h).map(|r| r.any_origin());
        assert_eq!(got("https://a.example", "GET", &["X-Ms-Meta-Tag", "Content-Type"]), Some(false));
        assert_eq!(
            got("https://a.example", "GET", &["x-ms-version"]),
            Some(true),
            "the second rule allows every header"
        );
        assert_eq!(got("https://b.example", "PUT", &[]), Some(true));
        assert_eq!(got("https://b.example", "DELETE", &[]), None);
        assert_eq!(cors_match(&rules[..1], "https://a.example", "GET", &["x-ms-version"]), None);
    }

    use super::*;

    const RULE: &str = "<Cors><CorsRule><AllowedOrigins>https://app.example</AllowedOrigins><AllowedMethods>GET,PUT</AllowedMethods><MaxAgeInSeconds>300</MaxAgeInSeconds><ExposedHeaders>x-ms-meta-*</ExposedHeaders><AllowedHeaders>x-ms-meta-*,content-type</AllowedHeaders></CorsRule></Cors>";

    #[test]
    fn a_set_replaces_the_sections_it_carries_and_keeps_the_rest() {
        let defaults = get(None);
        assert!(
            defaults.contains("<Cors/>") && defaults.contains("<DeleteRetentionPolicy><Enabled>false"),
            "{defaults}"
        );
        let body = format!("<StorageServiceProperties>{RULE}<DefaultServiceVersion>2025-01-05</DefaultServiceVersion></StorageServiceProperties>");
        let stored = merge(None, body.as_bytes()).unwrap();
        let rules = cors_rules(Some(&stored));
        assert_eq!(rules.len(), 1);
        assert_eq!((rules[0].methods.clone(), rules[0].max_age), (vec!["GET".to_owned(), "PUT".to_owned()], 300));
        let body = "<StorageServiceProperties><DeleteRetentionPolicy><Enabled>true</Enabled><Days>7</Days></DeleteRetentionPolicy></StorageServiceProperties>";
        let stored = merge(Some(&stored), body.as_bytes()).unwrap();
        assert_eq!(cors_rules(Some(&stored)).len(), 1, "CORS kept: {stored}");
        assert!(stored.contains("<Days>7</Days>") && stored.contains("2025-01-05"), "{stored}");
        let order: Vec<usize> = SECTIONS.iter().filter_map(|s| stored.find(&format!("<{s}"))).collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "sections in Azure's order: {stored}");
    }

    #[test]
    fn what_azure_refuses_changes_nothing() {
        let six = format!(
            "<StorageServiceProperties><Cors>{}</Cors></StorageServiceProperties>",
            RULE.replace("<Cors>", "").replace("</Cors>", "").repeat(6)
        );
        for (bad, code) in [
            (six, ErrorCode::InvalidXmlDocument),
            ("<StorageServiceProperties><Cors><CorsRule><AllowedOrigins>*</AllowedOrigins><AllowedMethods>FETCH</AllowedMethods><MaxAgeInSeconds>1</MaxAgeInSeconds><ExposedHeaders/><AllowedHeaders/></CorsRule></Cors></StorageServiceProperties>".into(), ErrorCode::InvalidXmlNodeValue),
            ("<StorageServiceProperties><DeleteRetentionPolicy><Enabled>true</Enabled><Days>400</Days></DeleteRetentionPolicy></StorageServiceProperties>".into(), ErrorCode::InvalidXmlNodeValue),
            ("<StorageServiceProperties><Unknown/></StorageServiceProperties>".into(), ErrorCode::InvalidXmlDocument),
            ("<StorageServiceProperties><DefaultServiceVersion>latest</DefaultServiceVersion></StorageServiceProperties>".into(), ErrorCode::InvalidXmlNodeValue),
            ("<Other/>".into(), ErrorCode::InvalidXmlDocument),
        ] {
            assert_eq!(merge(None, bad.as_bytes()), Err(code), "{bad}");
        }
    }
}
