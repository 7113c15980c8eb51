//! `web_service`: web and application servers running on the node (see [`super::services`]).
use census_proto::v1::{WebService, record::Body};

use super::services::{Role, Service, detect};
use super::{CollectError, Collector, Context, Observation};

#[derive(Debug)]
pub struct WebServiceCollector;

impl Collector for WebServiceCollector {
    fn kind(&self) -> &'static str {
        "web_service"
    }

    fn collect(&self, ctx: &Context) -> Result<Vec<Observation>, CollectError> {
        Ok(detect(ctx, Role::WebServer)?
            .iter()
            .map(|service| {
                let body = WebService {
                    server: service.signature.name.to_string(),
                    version: service.version.clone(),
                    pid: service.main.pid,
                    process: service.main.comm.clone(),
                    exe: service.main.exe.clone(),
                    listen: service.listen.clone(),
                    config: config_file(service),
                    user: ctx.user_name(service.main.uid).to_string(),
                    container_id: service
                        .main
                        .container
                        .as_ref()
                        .map(|c| c.id.clone())
                        .unwrap_or_default(),
                };
                Observation::new(service.key(), Body::WebService(body))
            })
            .collect())
    }
}

/// The main configuration file a server was started with, or its default.
pub fn config_file(service: &Service) -> String {
    match service.signature.name {
        "nginx" => service
            .option("-c")
            .unwrap_or_else(|| match service.option("-p") {
                Some(prefix) => format!("{}/conf/nginx.conf", prefix.trim_end_matches('/')),
                None => "/etc/nginx/nginx.conf".into(),
            }),
        "apache" => service.option("-f").unwrap_or_else(|| {
            if service.main.comm == "httpd" {
                "/etc/httpd/conf/httpd.conf"
            } else {
                "/etc/apache2/apache2.conf"
            }
            .into()
        }),
        "haproxy" => service
            .option("-f")
            .unwrap_or_else(|| "/etc/haproxy/haproxy.cfg".into()),
        "tomcat" => service
            .option("-Dcatalina.base")
            .map(|base| format!("{base}/conf/server.xml"))
            .unwrap_or_default(),
        "caddy" => service.option("--config").unwrap_or_default(),
        _ => String::new(),
    }
}
