//! Every kind the build knows, gathered from the modules that define them: API flavours,
//! datasets, traces and their formats, arrival patterns, analyses, plots and metrics. Each
//! module keeps its own list, so adding a kind stays one file and one registration line.

use serde::Serialize;

use crate::{
    analyze,
    api::flavour::ApiFlavour,
    catalogue::CATALOGUE,
    plot,
    workload::{dataset::SpanSize, schedule::Pattern, trace},
};

/// One known kind.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Entry {
    pub category: &'static str,
    pub name: String,
    pub about: String,
}

/// The categories, in listing order.
pub const CATEGORIES: [&str; 8] = [
    "apis",
    "datasets",
    "traces",
    "trace-formats",
    "patterns",
    "analyses",
    "plots",
    "metrics",
];

fn entry(category: &'static str, name: impl Into<String>, about: impl Into<String>) -> Entry {
    Entry {
        category,
        name: name.into(),
        about: about.into(),
    }
}

/// Every entry of `category`, or of every category for "all"; Err lists the categories.
pub fn list(category: &str) -> Result<Vec<Entry>, String> {
    if category != "all" && !CATEGORIES.contains(&category) {
        return Err(format!(
            "unknown category '{category}': use all or one of {}",
            CATEGORIES.join(", ")
        ));
    }
    let mut all = Vec::new();
    all.extend(
        ApiFlavour::ALL
            .iter()
            .map(|f| entry("apis", f.name(), format!("POST {}", f.path()))),
    );
    all.extend(
        SpanSize::KINDS
            .iter()
            .map(|(n, a)| entry("datasets", *n, *a)),
    );
    all.extend(trace::BUILTIN_TRACES.iter().map(|t| {
        entry(
            "traces",
            *t,
            "built-in Azure LLM inference trace 2023 (--trace)",
        )
    }));
    all.extend(
        trace::TraceFormat::KINDS
            .iter()
            .map(|(n, a)| entry("trace-formats", *n, *a)),
    );
    all.extend(
        Pattern::KINDS
            .iter()
            .map(|(n, a)| entry("patterns", *n, *a)),
    );
    all.extend(
        analyze::KINDS
            .iter()
            .map(|k| entry("analyses", k.name, k.about)),
    );
    all.extend(plot::KINDS.iter().map(|k| entry("plots", k.name, k.title)));
    all.extend(CATALOGUE.iter().map(|d| {
        entry(
            "metrics",
            d.name,
            format!("[{:?}, {}] {}", d.scope, d.unit, d.formula).to_lowercase(),
        )
    }));
    Ok(all
        .into_iter()
        .filter(|e| category == "all" || e.category == category)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_category_has_entries_and_bad_ones_are_named() {
        let all = list("all").unwrap();
        for c in CATEGORIES {
            assert!(all.iter().any(|e| e.category == c), "{c}");
        }
        assert_eq!(list("plots").unwrap().len(), plot::KINDS.len());
        assert!(list("apis")
            .unwrap()
            .iter()
            .any(|e| e.name == "ollama-generate"));
        assert!(list("colours")
            .unwrap_err()
            .contains("unknown category 'colours'"));
    }
}
