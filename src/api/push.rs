//! Handlers for push registration: UnifiedPush distributors and FCM tokens.

use tonic::{Request, Response, Status};

use super::session::caller;
use crate::proto::guildhall::v1 as pb;
use crate::push::Push;

type Reply<T> = Result<Response<T>, Status>;

pub async fn register_distributor(
    p: &Push,
    r: Request<pb::RegisterPushDistributorRequest>,
) -> Reply<pb::Empty> {
    let s = caller(&r)?;
    p.register_distributor(&s, &r.get_ref().distributor_url)
        .await?;
    Ok(Response::new(pb::Empty {}))
}

pub async fn list_distributors(
    p: &Push,
    r: Request<pb::Empty>,
) -> Reply<pb::ListPushDistributorsResponse> {
    let s = caller(&r)?;
    let distributor_urls = p.list_distributors(&s).await?;
    Ok(Response::new(pb::ListPushDistributorsResponse {
        distributor_urls,
    }))
}

pub async fn register_fcm_token(
    p: &Push,
    r: Request<pb::RegisterFcmTokenRequest>,
) -> Reply<pb::Empty> {
    let s = caller(&r)?;
    p.register_fcm_token(&s, &r.get_ref().token).await?;
    Ok(Response::new(pb::Empty {}))
}

pub async fn unregister_fcm_token(
    p: &Push,
    r: Request<pb::UnregisterFcmTokenRequest>,
) -> Reply<pb::Empty> {
    let s = caller(&r)?;
    p.unregister_fcm_token(&s, &r.get_ref().token).await?;
    Ok(Response::new(pb::Empty {}))
}
