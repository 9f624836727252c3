//! The gRPC service on `<sockets dir>/launcher-sock`: a thin layer mapping calls to the
//! [`Launcher`] and its errors to status codes.

use std::pin::Pin;
use std::sync::Arc;

use launcher_proto::v1::{
    DomainEvent, DomainRequest, DomainStats, DomainStatus, GuestFilesystems, GuestInfo, GuestUsers,
    InfoRequest, InfoResponse, MigrateRequest, MigrationTarget, PingRequest, PingResponse,
    SoftRebootRequest, SyncRequest, WatchRequest,
};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::info;

use crate::launcher::{Launcher, LauncherError};

pub struct Service {
    launcher: Arc<Launcher>,
}

impl Service {
    pub fn new(launcher: Arc<Launcher>) -> Self {
        Service { launcher }
    }
}

fn status(e: LauncherError) -> Status {
    match e {
        LauncherError::FailedPrecondition(m) => Status::failed_precondition(m),
        LauncherError::InvalidArgument(m) => Status::invalid_argument(m),
        LauncherError::Unavailable(m) => Status::unavailable(m),
        LauncherError::Internal(m) => Status::internal(m),
        LauncherError::DeadlineExceeded(m) => Status::deadline_exceeded(m),
    }
}

type Reply<T> = Result<Response<T>, Status>;

impl Service {
    fn check(&self, uid: &str) -> Result<(), Status> {
        self.launcher.check_uid(uid).map_err(status)
    }
}

#[tonic::async_trait]
impl launcher_proto::Launcher for Service {
    async fn info(&self, _: Request<InfoRequest>) -> Reply<InfoResponse> {
        Ok(Response::new(self.launcher.info()))
    }

    async fn ping(&self, _: Request<PingRequest>) -> Reply<PingResponse> {
        Ok(Response::new(PingResponse {}))
    }

    async fn sync(&self, req: Request<SyncRequest>) -> Reply<DomainStatus> {
        let req = req.into_inner();
        let st = self
            .launcher
            .sync(&req.vmi_json, &req.container_disks)
            .await
            .map_err(status)?;
        Ok(Response::new(st))
    }

    async fn pause(&self, req: Request<DomainRequest>) -> Reply<DomainStatus> {
        self.check(&req.get_ref().uid)?;
        info!("pause requested");
        Ok(Response::new(self.launcher.pause().await.map_err(status)?))
    }

    async fn unpause(&self, req: Request<DomainRequest>) -> Reply<DomainStatus> {
        self.check(&req.get_ref().uid)?;
        info!("unpause requested");
        Ok(Response::new(
            self.launcher.unpause().await.map_err(status)?,
        ))
    }

    async fn shutdown(&self, req: Request<DomainRequest>) -> Reply<DomainStatus> {
        self.check(&req.get_ref().uid)?;
        info!("shutdown (ACPI) requested");
        Ok(Response::new(
            self.launcher.shutdown().await.map_err(status)?,
        ))
    }

    async fn soft_reboot(&self, req: Request<SoftRebootRequest>) -> Reply<DomainStatus> {
        self.check(&req.get_ref().uid)?;
        let guest_agent = req.get_ref().guest_agent;
        info!(guest_agent, "soft reboot requested");
        Ok(Response::new(
            self.launcher
                .soft_reboot(guest_agent)
                .await
                .map_err(status)?,
        ))
    }

    async fn kill(&self, req: Request<DomainRequest>) -> Reply<DomainStatus> {
        self.check(&req.get_ref().uid)?;
        info!("kill requested");
        Ok(Response::new(self.launcher.kill().await.map_err(status)?))
    }

    async fn delete(&self, req: Request<DomainRequest>) -> Reply<DomainStatus> {
        self.check(&req.get_ref().uid)?;
        info!("delete requested");
        Ok(Response::new(self.launcher.delete().await.map_err(status)?))
    }

    async fn get_domain(&self, req: Request<DomainRequest>) -> Reply<DomainStatus> {
        self.check(&req.get_ref().uid)?;
        Ok(Response::new(self.launcher.status().await))
    }

    async fn get_domain_stats(&self, req: Request<DomainRequest>) -> Reply<DomainStats> {
        self.check(&req.get_ref().uid)?;
        Ok(Response::new(self.launcher.stats().await.map_err(status)?))
    }

    async fn get_guest_info(&self, req: Request<DomainRequest>) -> Reply<GuestInfo> {
        self.check(&req.get_ref().uid)?;
        Ok(Response::new(
            self.launcher.guest_info().await.map_err(status)?,
        ))
    }

    async fn get_guest_users(&self, req: Request<DomainRequest>) -> Reply<GuestUsers> {
        self.check(&req.get_ref().uid)?;
        Ok(Response::new(
            self.launcher.guest_users().await.map_err(status)?,
        ))
    }

    async fn get_guest_filesystems(&self, req: Request<DomainRequest>) -> Reply<GuestFilesystems> {
        self.check(&req.get_ref().uid)?;
        Ok(Response::new(
            self.launcher.guest_filesystems().await.map_err(status)?,
        ))
    }

    async fn prepare_migration_target(&self, req: Request<SyncRequest>) -> Reply<MigrationTarget> {
        let req = req.into_inner();
        info!("preparing as a migration target");
        let t = self
            .launcher
            .prepare_migration_target(&req.vmi_json, &req.container_disks)
            .await
            .map_err(status)?;
        Ok(Response::new(t))
    }

    async fn migrate(&self, req: Request<MigrateRequest>) -> Reply<DomainStatus> {
        self.check(&req.get_ref().uid)?;
        let req = req.into_inner();
        Ok(Response::new(
            self.launcher.migrate(&req).await.map_err(status)?,
        ))
    }

    type WatchEventsStream = Pin<Box<dyn Stream<Item = Result<DomainEvent, Status>> + Send>>;

    async fn watch_events(&self, req: Request<WatchRequest>) -> Reply<Self::WatchEventsStream> {
        self.check(&req.get_ref().uid)?;
        let rx = self.launcher.watch().await;
        let stream = tokio_stream::StreamExt::map(ReceiverStream::new(rx), Ok);
        Ok(Response::new(Box::pin(stream)))
    }
}
