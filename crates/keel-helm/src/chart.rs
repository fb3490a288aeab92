//! The deployed chart, written back to disk from the release so that an upgrade uses exactly
//! the chart that runs (same version, same templates), not whatever a repository holds now.

use std::path::{Component, Path};

use base64::Engine as _;
use serde_json::Value;

use crate::release::{ChartFile, StoredChart};

/// Writes `chart` into the empty directory `dir`.
///
/// # Errors
/// What makes the stored chart unusable: a chart with dependencies (Helm keeps no subcharts in
/// its storage, so the release cannot be upgraded from it), a file path that leaves the
/// chart's directory, content that is not base64, or a write that fails.
pub(crate) fn write(chart: &StoredChart, dir: &Path) -> Result<(), String> {
    let name = chart
        .metadata
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("the chart");
    if chart
        .metadata
        .get("dependencies")
        .and_then(Value::as_array)
        .is_some_and(|deps| !deps.is_empty())
    {
        return Err(format!(
            "chart {name} has dependencies, and Helm's storage keeps no subcharts, so the \
             release cannot be upgraded from the deployed chart"
        ));
    }
    let io = |what: &str, e: std::io::Error| format!("writing {what} of chart {name}: {e}");
    let metadata = serde_json::to_vec_pretty(&chart.metadata).expect("JSON values serialize");
    std::fs::write(dir.join("Chart.yaml"), metadata).map_err(|e| io("Chart.yaml", e))?;
    let values = serde_json::to_vec_pretty(&chart.values.clone().unwrap_or_default())
        .expect("JSON values serialize");
    std::fs::write(dir.join("values.yaml"), values).map_err(|e| io("values.yaml", e))?;
    if let Some(schema) = &chart.schema {
        let bytes = decode(name, "values.schema.json", schema)?;
        std::fs::write(dir.join("values.schema.json"), bytes)
            .map_err(|e| io("values.schema.json", e))?;
    }
    for file in chart.templates.iter().chain(&chart.files) {
        let relative = safe_path(name, file)?;
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io(&file.name, e))?;
        }
        std::fs::write(&path, decode(name, &file.name, &file.data)?)
            .map_err(|e| io(&file.name, e))?;
    }
    Ok(())
}

fn decode(chart: &str, file: &str, data: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|e| format!("file {file} of chart {chart} is not base64 ({e})"))
}

/// `file`'s path when it stays inside the chart: relative, no `..`, not a file the chart's
/// own metadata is written to.
fn safe_path<'a>(chart: &str, file: &'a ChartFile) -> Result<&'a Path, String> {
    let path = Path::new(&file.name);
    let inside = !file.name.is_empty()
        && path.components().all(|c| matches!(c, Component::Normal(_)))
        && !matches!(
            file.name.as_str(),
            "Chart.yaml" | "values.yaml" | "values.schema.json"
        );
    if inside {
        Ok(path)
    } else {
        Err(format!(
            "chart {chart} holds a file named {:?}, which is not a path inside a chart",
            file.name
        ))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn chart(value: Value) -> StoredChart {
        serde_json::from_value(value).unwrap()
    }

    fn b64(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    #[test]
    fn writes_metadata_values_templates_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let stored = chart(json!({
            "metadata": {"apiVersion": "v2", "name": "web", "version": "0.1.0"},
            "values": {"image": {"tag": "1.0"}},
            "templates": [{"name": "templates/deployment.yaml", "data": b64("kind: Deployment")}],
            "files": [{"name": "files/config.txt", "data": b64("x")}],
        }));
        write(&stored, dir.path()).unwrap();
        let read = |p: &str| std::fs::read_to_string(dir.path().join(p)).unwrap();
        let metadata: Value = serde_json::from_str(&read("Chart.yaml")).unwrap();
        assert_eq!(metadata["version"], "0.1.0");
        let values: Value = serde_json::from_str(&read("values.yaml")).unwrap();
        assert_eq!(values["image"]["tag"], "1.0");
        assert_eq!(read("templates/deployment.yaml"), "kind: Deployment");
        assert_eq!(read("files/config.txt"), "x");
    }

    #[test]
    fn refuses_paths_outside_the_chart_and_charts_with_dependencies() {
        for name in [
            "../escape",
            "/etc/passwd",
            "templates/../../x",
            "",
            "Chart.yaml",
        ] {
            let dir = tempfile::tempdir().unwrap();
            let stored = chart(json!({"metadata": {"name": "web"},
                "templates": [{"name": name, "data": b64("x")}]}));
            let error = write(&stored, dir.path()).unwrap_err();
            assert!(
                error.contains("not a path inside a chart"),
                "{name}: {error}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let stored = chart(json!({"metadata": {"name": "web",
            "dependencies": [{"name": "redis", "version": "1"}]}}));
        let error = write(&stored, dir.path()).unwrap_err();
        assert!(error.contains("has dependencies"), "{error}");
        let stored = chart(json!({"metadata": {"name": "web"},
            "templates": [{"name": "templates/a.yaml", "data": "%%"}]}));
        assert!(
            write(&stored, dir.path())
                .unwrap_err()
                .contains("not base64")
        );
    }
}
