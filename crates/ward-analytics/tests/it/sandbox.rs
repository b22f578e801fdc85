//! Ad hoc SQL: one read-only SELECT over the caller's own dataset, limited in rows, time
//! and memory. Another provider's data cannot be reached by any SQL.

use std::time::Duration;

use ward_analytics::FacilityAnalytics;
use ward_ports::{AnalyticsSettings, SqlError};

use crate::{SAMPLE, fixture, fixture_with, provider, upload};

async fn sql(fx: &crate::Fixture, who: &str, sql: &str) -> Result<ward_ports::SqlAnswer, SqlError> {
    let analytics = fx.ctx.analytics.clone().unwrap();
    analytics
        .sql(&fx.ctx.storage(), &provider(who), sql, 100)
        .await
}

#[tokio::test]
async fn a_provider_queries_its_own_facilities_and_nothing_else() {
    let fx = fixture();
    upload(&fx, &provider("PROVA"), SAMPLE.as_bytes()).await;
    let mut other = Vec::new();
    ward_analytics::generate::write_json_lines(&mut other, 10, 1).unwrap();
    upload(&fx, &provider("PROVB"), &other).await;

    let answer = sql(
        &fx,
        "PROVA",
        "SELECT count(*) AS n, sum(employee_count) AS e FROM facilities",
    )
    .await
    .unwrap();
    assert_eq!(answer.columns, ["n", "e"]);
    assert_eq!(answer.rows[0]["n"], 3);
    assert_eq!(answer.rows[0]["e"], 410);
    let answer = sql(&fx, "PROVB", "SELECT count(*) AS n FROM facilities")
        .await
        .unwrap();
    assert_eq!(answer.rows[0]["n"], 10);
    let answer = sql(
        &fx,
        "PROVA",
        "SELECT accreditation_id FROM accreditations ORDER BY 1",
    )
    .await
    .unwrap();
    assert_eq!(answer.rows.len(), 3);
    assert!(!answer.truncated);

    // Every way to name another provider's objects or the file system is refused.
    let b_dataset = ward_analytics::dataset::current(fx.ctx.table.as_ref(), &provider("PROVB"))
        .await
        .unwrap()
        .unwrap()
        .object_key;
    let file = b_dataset.rsplit_once('/').unwrap().1.to_owned();
    let attempts = [
        format!("SELECT * FROM '{b_dataset}'"),
        format!("SELECT * FROM 'ward://dataset/../PROVB/datasets/facilities/{file}'"),
        format!("SELECT * FROM 'ward://dataset/facilities/{file}'"),
        "SELECT * FROM 'file:///etc/passwd'".to_owned(),
        "SELECT * FROM 'http://169.254.169.254/latest/meta-data'".to_owned(),
        format!("SELECT * FROM read_parquet('{b_dataset}')"),
        format!("SELECT * FROM parquet_metadata('{b_dataset}')"),
        format!(
            "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION 'ward://dataset/../PROVB/datasets/facilities/{file}'"
        ),
        "COPY facilities TO '/tmp/out.csv'".to_owned(),
        "INSERT INTO facilities SELECT * FROM facilities".to_owned(),
        "SET datafusion.execution.target_partitions = 1".to_owned(),
        "SELECT 1; SELECT 2".to_owned(),
        "EXPLAIN SELECT * FROM facilities".to_owned(),
        "SELECT * FROM information_schema.tables".to_owned(),
        "DROP TABLE facilities".to_owned(),
    ];
    for attempt in &attempts {
        match sql(&fx, "PROVA", attempt).await {
            Err(SqlError::Refused(_) | SqlError::Invalid(_)) => {}
            other => panic!("{attempt} was not refused: {other:?}"),
        }
    }
    // ...and PROVA's tables still hold only PROVA's rows after all of it.
    let answer = sql(&fx, "PROVA", "SELECT count(*) AS n FROM facilities")
        .await
        .unwrap();
    assert_eq!(answer.rows[0]["n"], 3);
    // A provider with no facilities has nothing to query.
    assert!(matches!(
        sql(&fx, "PROVC", "SELECT 1").await,
        Err(SqlError::NoData)
    ));
}

#[tokio::test]
async fn rows_and_time_are_limited() {
    let fx = fixture_with(AnalyticsSettings {
        query_timeout: Duration::from_millis(300),
        max_sql_rows: 5,
        query_memory_bytes: 64 * 1024 * 1024,
        ..AnalyticsSettings::default()
    });
    upload(&fx, &provider("PROVA"), SAMPLE.as_bytes()).await;
    let analytics = fx.ctx.analytics.clone().unwrap();
    let answer = analytics
        .sql(
            &fx.ctx.storage(),
            &provider("PROVA"),
            "SELECT * FROM generate_series(1, 100)",
            1000,
        )
        .await
        .unwrap();
    assert_eq!(answer.rows.len(), 5, "capped at the configured maximum");
    assert!(answer.truncated);
    let slow = "SELECT count(*) FROM generate_series(1, 100000) a, generate_series(1, 100000) b";
    assert!(matches!(
        sql(&fx, "PROVA", slow).await,
        Err(SqlError::Timeout(0))
    ));
}

#[tokio::test]
async fn an_aggregation_larger_than_its_memory_pool_is_refused_for_memory() {
    // Time enough that only the memory bound can stop it.
    let fx = fixture_with(AnalyticsSettings {
        query_timeout: Duration::from_secs(120),
        query_memory_bytes: 64 * 1024 * 1024,
        ..AnalyticsSettings::default()
    });
    upload(&fx, &provider("PROVA"), SAMPLE.as_bytes()).await;
    // Every distinct value held at once (a GROUP BY over generate_series itself would
    // stream: its input is ordered).
    let hungry = "SELECT count(DISTINCT (a.value * 7919) % 1000000007) AS n FROM generate_series(1, 20000000) a";
    match sql(&fx, "PROVA", hungry).await {
        Err(SqlError::Refused(reason)) => assert!(reason.contains("memory"), "{reason}"),
        other => panic!("an aggregation past its memory pool ran: {other:?}"),
    }
    let _ = FacilityAnalytics::default();
}

#[tokio::test]
async fn bad_sql_gets_a_clear_error() {
    let fx = fixture();
    upload(&fx, &provider("PROVA"), SAMPLE.as_bytes()).await;
    match sql(&fx, "PROVA", "SELEC * FROM facilities").await {
        Err(SqlError::Refused(reason) | SqlError::Invalid(reason)) => {
            assert!(
                reason.contains("SELEC") || reason.contains("Expected"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    match sql(&fx, "PROVA", "SELECT nope FROM facilities").await {
        Err(SqlError::Invalid(reason)) => assert!(reason.contains("nope"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let deep = format!("SELECT {}1{}", "(".repeat(5_000), ")".repeat(5_000));
    assert!(
        sql(&fx, "PROVA", &deep).await.is_err(),
        "deep nesting is an error, not a crash"
    );
    assert!(matches!(
        sql(&fx, "PROVA", "").await,
        Err(SqlError::Refused(_))
    ));
}
