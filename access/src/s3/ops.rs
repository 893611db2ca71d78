//! The S3 operations, each as calls of the public client API made as the request's user.
//!
//! Invariants: every operation checks its bucket and key before touching the cluster; an
//! object is written as one write-once file made visible only when its body ended and was
//! stored (an interrupted PUT, part or completion leaves the old object, if any, as it was);
//! errors carry S3's codes (NoSuchBucket, NoSuchKey, BucketNotEmpty, InvalidRange, …).
use super::list::list;
use super::names::*;
use super::Gateway;
use bytes::Bytes;
use futures_util::StreamExt;
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, S3};
use shale_client::{Client, ClientError, CreateOptions, FileStat};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// The S3 service over a [`Gateway`].
pub struct S3Gateway(pub Arc<Gateway>);

/// Bytes per body frame sent for a GET.
const FRAME: usize = 1 << 20;

fn internal(e: impl std::fmt::Display) -> S3Error {
    S3Error::with_message(S3ErrorCode::InternalError, e.to_string())
}

/// A client error as S3 sees it; `missing` is the code for NotFound.
fn s3(e: ClientError, missing: S3ErrorCode) -> S3Error {
    let msg = e.to_string();
    let code = match e {
        ClientError::NotFound(_) => missing,
        ClientError::PermissionDenied(_) | ClientError::Unauthenticated(_) => {
            S3ErrorCode::AccessDenied
        }
        ClientError::InvalidArgument(_) => S3ErrorCode::InvalidArgument,
        ClientError::ResourceExhausted(_) | ClientError::Unavailable(_) => {
            S3ErrorCode::ServiceUnavailable
        }
        ClientError::FailedPrecondition(_) => S3ErrorCode::InvalidRequest,
        _ => S3ErrorCode::InternalError,
    };
    S3Error::with_message(code, msg)
}

fn bad_key(why: String) -> S3Error {
    S3Error::with_message(S3ErrorCode::InvalidArgument, why)
}

fn time_of(st: &FileStat) -> Timestamp {
    Timestamp::from(UNIX_EPOCH + Duration::from_millis(st.mtime_ms))
}

fn etag_of(st: &FileStat) -> ETag {
    ETag::Strong(etag(&st.root, st.length, st.inode, st.mtime_ms))
}

impl S3Gateway {
    /// The client acting as the request's user.
    async fn client<T>(&self, req: &S3Request<T>) -> S3Result<Client> {
        Ok(self.user(req).await?.1)
    }

    /// The request's user, and the client acting as them.
    async fn user<T>(&self, req: &S3Request<T>) -> S3Result<(String, Client)> {
        let Some(cred) = &req.credentials else {
            return Err(s3_error!(AccessDenied, "anonymous requests are not served"));
        };
        let user = match self.0.keys.lookup(&cred.access_key).await {
            Ok(Some((user, _))) => user,
            Ok(None) => return Err(s3_error!(InvalidAccessKeyId)),
            Err(e) => return Err(s3(e, S3ErrorCode::InvalidAccessKeyId)),
        };
        let c = self
            .0
            .client_for(&user)
            .await
            .map_err(|e| s3(e, S3ErrorCode::AccessDenied))?;
        Ok((user, c))
    }

    /// Fails with NoSuchBucket unless `bucket` is a bucket directory.
    async fn bucket(c: &Client, bucket: &str) -> S3Result<FileStat> {
        if !is_bucket(bucket) {
            return Err(s3_error!(NoSuchBucket));
        }
        match c.stat(&bucket_path(bucket)).await {
            Ok(st) if st.is_dir => Ok(st),
            Ok(_) => Err(s3_error!(NoSuchBucket)),
            Err(e) => Err(s3(e, S3ErrorCode::NoSuchBucket)),
        }
    }

    /// The object's stat, or NoSuchKey / NoSuchBucket.
    async fn object(c: &Client, bucket: &str, key: &str) -> S3Result<(String, FileStat)> {
        let (path, _) = object_path(bucket, key).map_err(bad_key)?;
        match c.stat(&path).await {
            Ok(st) if !st.is_dir => Ok((path, st)),
            Ok(_) => Err(s3_error!(NoSuchKey)),
            Err(ClientError::NotFound(_)) => {
                Self::bucket(c, bucket).await?;
                Err(s3_error!(NoSuchKey))
            }
            Err(e) => Err(s3(e, S3ErrorCode::NoSuchKey)),
        }
    }

    /// Makes the directories above `key` (as the user).
    async fn parents(c: &Client, bucket: &str, key: &str) -> S3Result<()> {
        if let Some(last) = parents(bucket, key).pop() {
            c.mkdir(&last, true)
                .await
                .map_err(|e| s3(e, S3ErrorCode::NoSuchBucket))?;
        }
        Ok(())
    }

    /// Removes the directories above `key` that are left empty (best effort).
    async fn prune(c: &Client, bucket: &str, key: &str) {
        for dir in parents(bucket, key).into_iter().rev() {
            if c.delete(&dir, false).await.is_err() {
                break;
            }
        }
    }

    /// Writes `body` as the new file `path` (replacing what is there once complete).
    async fn store(c: &Client, path: &str, body: Option<StreamingBlob>) -> S3Result<FileStat> {
        let mut w = c
            .create(path, CreateOptions::default().overwrite(true))
            .await
            .map_err(|e| s3(e, S3ErrorCode::NoSuchBucket))?;
        if let Some(mut body) = body {
            while let Some(piece) = body.next().await {
                let piece = piece.map_err(|e| {
                    S3Error::with_message(S3ErrorCode::IncompleteBody, e.to_string())
                })?;
                w.write_all(&piece).await.map_err(internal)?;
            }
        }
        w.close()
            .await
            .map_err(|e| s3(e, S3ErrorCode::InternalError))?;
        c.stat(path)
            .await
            .map_err(|e| s3(e, S3ErrorCode::InternalError))
    }
}

/// A GET body: `len` bytes of `r` from its position, in frames.
fn body(r: shale_client::FileReader, len: u64) -> StreamingBlob {
    let s = futures_util::stream::unfold((r, len), |(mut r, left)| async move {
        if left == 0 {
            return None;
        }
        let n = (left as usize).min(FRAME);
        let mut buf = vec![0u8; n];
        match r.read_exact(&mut buf).await {
            Ok(_) => Some((Ok(Bytes::from(buf)), (r, left - n as u64))),
            Err(e) => Some((Err(e), (r, 0))),
        }
    });
    StreamingBlob::wrap(s)
}

#[async_trait::async_trait]
impl S3 for S3Gateway {
    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let c = self.client(&req).await?;
        let all = c
            .list("/")
            .await
            .map_err(|e| s3(e, S3ErrorCode::InternalError))?;
        let buckets = all
            .into_iter()
            .filter(|st| st.is_dir && is_bucket(&st.name))
            .map(|st| Bucket {
                creation_date: Some(time_of(&st)),
                name: Some(st.name),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            ..Default::default()
        }))
    }

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        // Any user may make a bucket, as in S3: the gateway makes the directory and gives it
        // to the user (a user need not be able to write `/`).
        let (user, c) = self.user(&req).await?;
        let b = &req.input.bucket;
        if !is_bucket(b) {
            return Err(s3_error!(InvalidBucketName));
        }
        let path = bucket_path(b);
        let admin = &self.0.admin;
        match admin.mkdir_mode(&path, false, Some(0o755)).await {
            Ok(_) => {
                if user != self.0.me {
                    if let Err(e) = admin.chown(&path, Some(&user), Some(&user)).await {
                        let _ = admin.delete(&path, false).await;
                        return Err(s3(e, S3ErrorCode::InternalError));
                    }
                }
                Ok(S3Response::new(CreateBucketOutput {
                    location: Some(format!("/{b}")),
                }))
            }
            Err(ClientError::AlreadyExists(_)) => {
                let st = c.stat(&path).await.ok();
                if st.is_some_and(|st| st.owner == user) {
                    Err(s3_error!(BucketAlreadyOwnedByYou))
                } else {
                    Err(s3_error!(BucketAlreadyExists))
                }
            }
            Err(e) => Err(s3(e, S3ErrorCode::InternalError)),
        }
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        let c = self.client(&req).await?;
        Self::bucket(&c, &req.input.bucket).await?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        let c = self.client(&req).await?;
        Self::bucket(&c, &req.input.bucket).await?;
        Ok(S3Response::new(GetBucketLocationOutput::default()))
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let (user, c) = self.user(&req).await?;
        let b = &req.input.bucket;
        let st = Self::bucket(&c, b).await?;
        // A bucket goes by its owner's (or a superuser's) request; the gateway removes the
        // directory, since its owner need not be able to write `/`.
        let superuser = c.who_am_i().await.is_ok_and(|w| w.superuser);
        if st.owner != user && !superuser {
            return Err(s3_error!(
                AccessDenied,
                "only the bucket's owner may delete it"
            ));
        }
        match self.0.admin.delete(&bucket_path(b), false).await {
            Ok(()) => Ok(S3Response::new(DeleteBucketOutput::default())),
            Err(ClientError::FailedPrecondition(m)) if m.contains("not empty") => {
                Err(s3_error!(BucketNotEmpty))
            }
            Err(e) => Err(s3(e, S3ErrorCode::NoSuchBucket)),
        }
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let c = self.client(&req).await?;
        let input = req.input;
        let (path, dir) = object_path(&input.bucket, &input.key).map_err(bad_key)?;
        Self::bucket(&c, &input.bucket).await?;
        Self::parents(&c, &input.bucket, &input.key).await?;
        if dir {
            // A "folder" marker: the directory itself.
            match c.mkdir(&path, true).await {
                Ok(_) | Err(ClientError::AlreadyExists(_)) => {}
                Err(e) => return Err(s3(e, S3ErrorCode::NoSuchBucket)),
            }
            return Ok(S3Response::new(PutObjectOutput {
                e_tag: Some(ETag::Strong(EMPTY_ETAG.into())),
                ..Default::default()
            }));
        }
        let st = Self::store(&c, &path, input.body).await?;
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(etag_of(&st)),
            ..Default::default()
        }))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let c = self.client(&req).await?;
        let input = req.input;
        let (path, st) = Self::object(&c, &input.bucket, &input.key).await?;
        let len = st.length;
        let (range, content_range) = match &input.range {
            None => (0..len, None),
            Some(r) => {
                let r = r.check(len)?;
                let cr = format!("bytes {}-{}/{len}", r.start, r.end.saturating_sub(1));
                (r, Some(cr))
            }
        };
        let mut reader = c
            .open(&path)
            .await
            .map_err(|e| s3(e, S3ErrorCode::NoSuchKey))?;
        if reader.len() != len {
            return Err(s3_error!(
                InternalError,
                "the object changed while it was read"
            ));
        }
        reader
            .seek(std::io::SeekFrom::Start(range.start))
            .await
            .map_err(internal)?;
        let n = range.end - range.start;
        Ok(S3Response::new(GetObjectOutput {
            body: Some(body(reader, n)),
            content_length: Some(n as i64),
            content_range,
            accept_ranges: Some("bytes".into()),
            content_type: Some("application/octet-stream".parse().map_err(internal)?),
            e_tag: Some(etag_of(&st)),
            last_modified: Some(time_of(&st)),
            ..Default::default()
        }))
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let c = self.client(&req).await?;
        let (_, st) = Self::object(&c, &req.input.bucket, &req.input.key).await?;
        Ok(S3Response::new(HeadObjectOutput {
            content_length: Some(st.length as i64),
            accept_ranges: Some("bytes".into()),
            content_type: Some("application/octet-stream".parse().map_err(internal)?),
            e_tag: Some(etag_of(&st)),
            last_modified: Some(time_of(&st)),
            ..Default::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let c = self.client(&req).await?;
        let (bucket, key) = (&req.input.bucket, &req.input.key);
        let (path, _) = object_path(bucket, key).map_err(bad_key)?;
        Self::bucket(&c, bucket).await?;
        match c.delete(&path, false).await {
            // Deleting what is not there succeeds, as in S3.
            Ok(()) | Err(ClientError::NotFound(_)) => {}
            Err(ClientError::FailedPrecondition(m)) if m.contains("not empty") => {}
            Err(e) => return Err(s3(e, S3ErrorCode::NoSuchKey)),
        }
        Self::prune(&c, bucket, key).await;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let c = self.client(&req).await?;
        let bucket = req.input.bucket.clone();
        Self::bucket(&c, &bucket).await?;
        let (mut deleted, mut errors) = (Vec::new(), Vec::new());
        for o in req.input.delete.objects {
            let r = match object_path(&bucket, &o.key) {
                Err(why) => Err(("InvalidArgument".to_string(), why)),
                Ok((path, _)) => match c.delete(&path, false).await {
                    Ok(()) | Err(ClientError::NotFound(_)) => Ok(()),
                    Err(ClientError::PermissionDenied(m)) => Err(("AccessDenied".into(), m)),
                    Err(e) => Err(("InternalError".into(), e.to_string())),
                },
            };
            match r {
                Ok(()) => {
                    Self::prune(&c, &bucket, &o.key).await;
                    deleted.push(DeletedObject {
                        key: Some(o.key),
                        ..Default::default()
                    })
                }
                Err((code, message)) => errors.push(Error {
                    key: Some(o.key),
                    code: Some(code),
                    message: Some(message),
                    ..Default::default()
                }),
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: Some(errors),
            ..Default::default()
        }))
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let c = self.client(&req).await?;
        let input = req.input;
        let CopySource::Bucket {
            bucket: sb,
            key: sk,
            ..
        } = &input.copy_source
        else {
            return Err(s3_error!(NotImplemented, "only bucket copy sources"));
        };
        let (src, _) = Self::object(&c, sb, sk).await?;
        let (dst, dir) = object_path(&input.bucket, &input.key).map_err(bad_key)?;
        if dir {
            return Err(bad_key("a copy's key cannot end in `/`".into()));
        }
        Self::bucket(&c, &input.bucket).await?;
        Self::parents(&c, &input.bucket, &input.key).await?;
        if src != dst {
            c.copy(&src, &dst, &CreateOptions::default().overwrite(true))
                .await
                .map_err(|e| s3(e, S3ErrorCode::NoSuchKey))?;
        }
        let st = c
            .stat(&dst)
            .await
            .map_err(|e| s3(e, S3ErrorCode::InternalError))?;
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(etag_of(&st)),
                last_modified: Some(time_of(&st)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let c = self.client(&req).await?;
        let input = req.input;
        Self::bucket(&c, &input.bucket).await?;
        let delimited = match input.delimiter.as_deref() {
            None | Some("") => false,
            Some("/") => true,
            Some(_) => return Err(s3_error!(NotImplemented, "only the delimiter `/`")),
        };
        let max = input.max_keys.unwrap_or(1000).clamp(0, 1000) as usize;
        let prefix = input.prefix.clone().unwrap_or_default();
        let after = match (&input.continuation_token, &input.start_after) {
            (Some(t), _) => t.clone(),
            (None, Some(s)) => s.clone(),
            (None, None) => String::new(),
        };
        let root = bucket_path(&input.bucket);
        let page = list(&root, &prefix, delimited, &after, max, |p| {
            let c = c.clone();
            async move { c.list(&p).await }
        })
        .await
        .map_err(|e| s3(e, S3ErrorCode::NoSuchBucket))?;
        let key_count = (page.objects.len() + page.prefixes.len()) as i32;
        let contents = page
            .objects
            .iter()
            .map(|(k, st)| Object {
                key: Some(k.clone()),
                size: Some(st.length as i64),
                e_tag: Some(etag_of(st)),
                last_modified: Some(time_of(st)),
                storage_class: Some(ObjectStorageClass::from_static(
                    ObjectStorageClass::STANDARD,
                )),
                ..Default::default()
            })
            .collect();
        let prefixes = page
            .prefixes
            .iter()
            .map(|p| CommonPrefix {
                prefix: Some(p.clone()),
            })
            .collect();
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(prefix),
            delimiter: input.delimiter,
            max_keys: Some(max as i32),
            key_count: Some(key_count),
            is_truncated: Some(page.truncated),
            continuation_token: input.continuation_token,
            next_continuation_token: if page.truncated { page.last } else { None },
            start_after: input.start_after,
            contents: Some(contents),
            common_prefixes: Some(prefixes),
            ..Default::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let c = self.client(&req).await?;
        let input = req.input;
        let (_, dir) = object_path(&input.bucket, &input.key).map_err(bad_key)?;
        if dir {
            return Err(bad_key("a multipart upload's key cannot end in `/`".into()));
        }
        Self::bucket(&c, &input.bucket).await?;
        let id = hex(&random(16).map_err(internal)?);
        c.mkdir_mode(&upload_dir(&id), false, Some(0o700))
            .await
            .map_err(|e| s3(e, S3ErrorCode::InternalError))?;
        let target = format!("{}\n{}", input.bucket, input.key);
        let mut w = c
            .create(
                &format!("{}/target", upload_dir(&id)),
                CreateOptions::default(),
            )
            .await
            .map_err(|e| s3(e, S3ErrorCode::InternalError))?;
        w.write_all(target.as_bytes()).await.map_err(internal)?;
        w.close()
            .await
            .map_err(|e| s3(e, S3ErrorCode::InternalError))?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(id),
            ..Default::default()
        }))
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let c = self.client(&req).await?;
        let input = req.input;
        check_upload(&c, &input.upload_id, &input.bucket, &input.key).await?;
        if !(1..=10_000).contains(&input.part_number) {
            return Err(s3_error!(
                InvalidArgument,
                "part numbers go from 1 to 10000"
            ));
        }
        let st = Self::store(
            &c,
            &part_path(&input.upload_id, input.part_number),
            input.body,
        )
        .await?;
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(etag_of(&st)),
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let c = self.client(&req).await?;
        let input = req.input;
        check_upload(&c, &input.upload_id, &input.bucket, &input.key).await?;
        let parts = input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default();
        if parts.is_empty() {
            return Err(s3_error!(MalformedXML, "no parts named"));
        }
        // Every named part must be staged with the ETag it was given, in ascending order,
        // and all but the last at least 5 MiB.
        let mut staged = Vec::with_capacity(parts.len());
        let mut prev = 0;
        for (i, p) in parts.iter().enumerate() {
            let n = p.part_number.unwrap_or(0);
            if n <= prev {
                return Err(s3_error!(InvalidPartOrder));
            }
            prev = n;
            let path = part_path(&input.upload_id, n);
            let st = c
                .stat(&path)
                .await
                .map_err(|e| s3(e, S3ErrorCode::InvalidPart))?;
            let want = etag_of(&st);
            if p.e_tag
                .as_ref()
                .is_some_and(|t| t.value().trim_matches('"') != want.value())
            {
                return Err(s3_error!(InvalidPart, "part {n}: the ETag does not match"));
            }
            if i + 1 < parts.len() && st.length < MIN_PART {
                return Err(s3_error!(EntityTooSmall, "part {n} is under 5 MiB"));
            }
            staged.push(path);
        }
        let (dst, _) = object_path(&input.bucket, &input.key).map_err(bad_key)?;
        Self::parents(&c, &input.bucket, &input.key).await?;
        let mut w = c
            .create(&dst, CreateOptions::default().overwrite(true))
            .await
            .map_err(|e| s3(e, S3ErrorCode::NoSuchBucket))?;
        for path in &staged {
            let mut r = c
                .open(path)
                .await
                .map_err(|e| s3(e, S3ErrorCode::InvalidPart))?;
            tokio::io::copy(&mut r, &mut w).await.map_err(internal)?;
        }
        w.close()
            .await
            .map_err(|e| s3(e, S3ErrorCode::InternalError))?;
        if let Err(e) = c.delete(&upload_dir(&input.upload_id), true).await {
            tracing::warn!(upload = input.upload_id, "removing the staged parts: {e}");
        }
        let st = c
            .stat(&dst)
            .await
            .map_err(|e| s3(e, S3ErrorCode::InternalError))?;
        let tag = format!(
            "{}-{}",
            etag(&st.root, st.length, st.inode, st.mtime_ms),
            staged.len()
        );
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            e_tag: Some(ETag::Strong(tag)),
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let c = self.client(&req).await?;
        let input = req.input;
        check_upload(&c, &input.upload_id, &input.bucket, &input.key).await?;
        c.delete(&upload_dir(&input.upload_id), true)
            .await
            .map_err(|e| s3(e, S3ErrorCode::NoSuchUpload))?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }
}

/// Fails with NoSuchUpload unless upload `id` is staged for `bucket`/`key` (and readable by
/// the caller: the staging directory is its maker's).
async fn check_upload(c: &Client, id: &str, bucket: &str, key: &str) -> S3Result<()> {
    if !is_upload_id(id) {
        return Err(s3_error!(NoSuchUpload));
    }
    let mut r = c
        .open(&format!("{}/target", upload_dir(id)))
        .await
        .map_err(|e| s3(e, S3ErrorCode::NoSuchUpload))?;
    let mut text = String::new();
    r.read_to_string(&mut text)
        .await
        .map_err(|_| s3_error!(NoSuchUpload))?;
    if text != format!("{bucket}\n{key}") {
        return Err(s3_error!(NoSuchUpload, "the upload is for another key"));
    }
    Ok(())
}
