"""Authentication and authorization of the collector (issue 7): access tokens (`tokens`), their scopes
and the scope every gRPC method needs (`scopes`, `methods`), the cached token check and per-token rate
limit shared by gRPC and HTTP (`guard`, `ratelimit`), the gRPC server interceptor (`grpc_gate`) and the
HTTP middleware with the studio's login page (`http_gate`, `login`)."""
