//! S3 event notifications (as SQS message bodies) turned into jobs. Parsing is tolerant:
//! S3's test event carries no records, optional fields may be missing, keys are
//! form-URL-encoded (`+` for space, `%2F` for `/` from some emulators), and keys outside
//! `{provider}/uploaded/` (Ward's own copies into `completed/`) are not jobs.

use serde_json::Value;
use ward_domain::key_layout::parse_uploaded_object_key;

use crate::queue::Job;

/// One created object named by a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectCreated {
    /// The bucket, when the record names it.
    pub bucket: Option<String>,
    /// The decoded object key.
    pub key: String,
    /// The object's size, when the record carries it.
    pub size: Option<u64>,
}

/// Why a message is not a notification Ward can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The body is not JSON.
    #[error("the message is not JSON")]
    NotJson,
    /// The body is JSON but not an S3 notification.
    #[error("the message is not an S3 event notification")]
    NotS3,
    /// A record's key is not valid percent-encoding or UTF-8.
    #[error("an object key is not valid URL encoding")]
    BadKey,
}

/// The `ObjectCreated` records of a message (empty for S3's test event).
pub fn parse_notification(body: &str) -> Result<Vec<ObjectCreated>, EventError> {
    let message: Value = serde_json::from_str(body).map_err(|_| EventError::NotJson)?;
    if message.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Vec::new());
    }
    let records = message
        .get("Records")
        .and_then(Value::as_array)
        .ok_or(EventError::NotS3)?;
    let mut created = Vec::new();
    for record in records {
        let name = record
            .get("eventName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !name.starts_with("ObjectCreated") {
            continue;
        }
        let s3 = record.get("s3").ok_or(EventError::NotS3)?;
        let raw_key = s3
            .pointer("/object/key")
            .and_then(Value::as_str)
            .ok_or(EventError::NotS3)?;
        created.push(ObjectCreated {
            bucket: s3
                .pointer("/bucket/name")
                .and_then(Value::as_str)
                .map(str::to_owned),
            key: form_decode(raw_key)?,
            size: s3.pointer("/object/size").and_then(Value::as_u64),
        });
    }
    Ok(created)
}

/// The jobs a message asks for: one per created `{provider}/uploaded/{id}.csv` or `.json`.
pub fn jobs_of_notification(body: &str) -> Result<Vec<Job>, EventError> {
    Ok(parse_notification(body)?
        .into_iter()
        .filter_map(|object| parse_uploaded_object_key(&object.key))
        .map(|(provider, upload, kind)| Job::for_upload(&provider, &upload, kind))
        .collect())
}

/// `application/x-www-form-urlencoded` decoding, as S3 encodes keys in notifications.
fn form_decode(text: &str) -> Result<String, EventError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(at + 1..at + 3).ok_or(EventError::BadKey)?;
                let hex = std::str::from_utf8(hex).map_err(|_| EventError::BadKey)?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| EventError::BadKey)?);
                at += 2;
            }
            byte => out.push(byte),
        }
        at += 1;
    }
    String::from_utf8(out).map_err(|_| EventError::BadKey)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ward_domain::{ProviderId, UploadId};

    const AWS_EVENT: &str = r#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1",
        "eventTime":"2025-03-26T18:15:00.000Z","eventName":"ObjectCreated:Put",
        "s3":{"s3SchemaVersion":"1.0","bucket":{"name":"ward-uploads","arn":"arn:aws:s3:::ward-uploads"},
        "object":{"key":"PROV001/uploaded/20250326T181500Z-0123456789abcdef.csv","size":245197,"eTag":"x"}}}]}"#;

    #[test]
    fn an_aws_notification_becomes_one_job() {
        assert_eq!(
            jobs_of_notification(AWS_EVENT).unwrap(),
            vec![Job::CsvUpload {
                provider: ProviderId::parse("PROV001").unwrap(),
                upload: UploadId::parse("20250326T181500Z-0123456789abcdef").unwrap(),
            }]
        );
        let facilities = AWS_EVENT.replace(".csv\"", ".json\"");
        assert_eq!(
            jobs_of_notification(&facilities).unwrap(),
            vec![Job::FacilityUpload {
                provider: ProviderId::parse("PROV001").unwrap(),
                upload: UploadId::parse("20250326T181500Z-0123456789abcdef").unwrap(),
            }]
        );
        let objects = parse_notification(AWS_EVENT).unwrap();
        assert_eq!(objects[0].bucket.as_deref(), Some("ward-uploads"));
        assert_eq!(objects[0].size, Some(245_197));
    }

    #[test]
    fn test_events_missing_fields_and_encoded_keys_are_tolerated() {
        let test_event = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2025-01-01T00:00:00Z","Bucket":"b"}"#;
        assert_eq!(parse_notification(test_event).unwrap(), vec![]);
        // moto encodes '/' as %2F and leaves out size and bucket ARN.
        let moto = r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},
            "object":{"key":"PROV001%2Fuploaded%2F20250326T181500Z-0123456789abcdef.csv"}}}]}"#;
        assert_eq!(jobs_of_notification(moto).unwrap().len(), 1);
        assert_eq!(parse_notification(moto).unwrap()[0].size, None);
        let spaces =
            r#"{"Records":[{"eventName":"ObjectCreated:Copy","s3":{"object":{"key":"a+b%2Bc"}}}]}"#;
        assert_eq!(parse_notification(spaces).unwrap()[0].key, "a b+c");
    }

    #[test]
    fn other_events_keys_and_bodies_are_not_jobs() {
        let removed = r#"{"Records":[{"eventName":"ObjectRemoved:Delete","s3":{"object":{"key":"PROV001/uploaded/20250326T181500Z-0123456789abcdef.csv"}}}]}"#;
        assert_eq!(jobs_of_notification(removed).unwrap(), vec![]);
        let copy_to_completed = AWS_EVENT.replace("/uploaded/", "/completed/");
        assert_eq!(jobs_of_notification(&copy_to_completed).unwrap(), vec![]);
        let report = AWS_EVENT.replace(".csv\"", ".report.json\"");
        assert_eq!(jobs_of_notification(&report).unwrap(), vec![]);
        let forged = AWS_EVENT.replace("PROV001/uploaded/", "../uploaded/");
        assert_eq!(jobs_of_notification(&forged).unwrap(), vec![]);
        assert_eq!(parse_notification("not json"), Err(EventError::NotJson));
        assert_eq!(parse_notification("{\"hello\":1}"), Err(EventError::NotS3));
        let bad =
            r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"object":{"key":"a%zz"}}}]}"#;
        assert_eq!(parse_notification(bad), Err(EventError::BadKey));
    }
}
