//! `protocol.profile.v1.ProfileService`: Harmony's profile API as a thin adapter over
//! [`crate::harmony`]. The session layer has already authenticated every call.

use tonic::{Request, Response, Status};

use super::session::caller;
use crate::harmony::{Harmony, ProfileEdit, ProfileTarget};
use crate::proto::protocol::profile::v1 as hp;
use crate::proto::protocol::profile::v1::profile_service_server::ProfileService;

/// The Harmony profile service.
#[derive(Debug, Clone)]
pub struct ProfileApi {
    harmony: Harmony,
}

impl ProfileApi {
    /// The service over the Harmony domain.
    pub fn new(harmony: Harmony) -> Self {
        Self { harmony }
    }
}

type Reply<T> = Result<Response<T>, Status>;

/// Which user a `GetProfile` names: `user_id` or (guildhall addition) `guildhall_user_id`.
fn target(r: hp::GetProfileRequest) -> Result<ProfileTarget, Status> {
    match (r.user_id, r.guildhall_user_id.is_empty()) {
        (0, true) => Err(Status::invalid_argument(
            "user_id: required (a Harmony user id is never 0); or set guildhall_user_id",
        )),
        (num, true) => Ok(ProfileTarget::Num(num)),
        (0, false) => Ok(ProfileTarget::Hex(r.guildhall_user_id)),
        (_, false) => Err(Status::invalid_argument(
            "guildhall_user_id: set either user_id or guildhall_user_id, not both",
        )),
    }
}

#[tonic::async_trait]
impl ProfileService for ProfileApi {
    async fn get_profile(
        &self,
        request: Request<hp::GetProfileRequest>,
    ) -> Reply<hp::GetProfileResponse> {
        let session = caller(&request)?;
        let target = target(request.into_inner())?;
        let p = self.harmony.profile(&session, target).await?;
        let avatar = (!p.user.avatar_url.is_empty()).then(|| p.user.avatar_url.clone());
        Ok(Response::new(hp::GetProfileResponse {
            profile: Some(hp::Profile {
                user_name: p.user.display_name,
                user_avatar: avatar,
                user_status: p.status as i32,
                is_bot: p.is_bot,
            }),
            user_id: p.num,
            guildhall_user_id: p.user.id,
        }))
    }

    async fn update_profile(
        &self,
        request: Request<hp::UpdateProfileRequest>,
    ) -> Reply<hp::UpdateProfileResponse> {
        let session = caller(&request)?;
        let r = request.into_inner();
        let edit = ProfileEdit {
            name: r.new_user_name,
            avatar: r.new_user_avatar,
            status: r.new_user_status,
            is_bot: r.new_is_bot,
        };
        self.harmony.update_profile(&session, edit).await?;
        Ok(Response::new(hp::UpdateProfileResponse {}))
    }

    async fn get_app_data(
        &self,
        request: Request<hp::GetAppDataRequest>,
    ) -> Reply<hp::GetAppDataResponse> {
        let session = caller(&request)?;
        let r = request.into_inner();
        let app_data = self.harmony.app_data(&session, &r.app_id).await?;
        Ok(Response::new(hp::GetAppDataResponse { app_data }))
    }

    async fn set_app_data(
        &self,
        request: Request<hp::SetAppDataRequest>,
    ) -> Reply<hp::SetAppDataResponse> {
        let session = caller(&request)?;
        let r = request.into_inner();
        self.harmony
            .set_app_data(&session, &r.app_id, r.app_data)
            .await?;
        Ok(Response::new(hp::SetAppDataResponse {}))
    }
}
