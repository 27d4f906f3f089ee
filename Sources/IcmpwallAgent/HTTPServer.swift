import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle

/// A response of the metrics server.
public struct HTTPReply: Sendable {
    public var status: HTTPResponseStatus
    public var contentType: String
    public var body: String

    public init(status: HTTPResponseStatus, contentType: String = "text/plain; charset=utf-8", body: String) {
        self.status = status
        self.contentType = contentType
        self.body = body
    }
}

/// A minimal HTTP/1.1 server (SwiftNIO) for `/metrics` and `/healthz`: one event loop, one response per connection.
public final class MetricsServer: Service, Sendable {
    public typealias Router = @Sendable (_ method: HTTPMethod, _ path: String) -> HTTPReply

    let group: MultiThreadedEventLoopGroup
    let channel: any Channel
    let logger: Logger

    /// Binds now, so that a port in use is reported before the agent touches any interface.
    public static func bind(_ address: ListenAddress, logger: Logger, router: @escaping Router) async throws(AgentError) -> MetricsServer {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 64)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(HTTPHandler(router: router))
                }
            }
            .childChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
        do {
            // An IP literal binds exactly that address (no resolver: 127.0.0.1 stays IPv4); a name is resolved.
            let channel = if let literal = try? SocketAddress(ipAddress: address.host, port: address.port) {
                try await bootstrap.bind(to: literal).get()
            } else {
                try await bootstrap.bind(host: address.host, port: address.port).get()
            }
            return MetricsServer(group: group, channel: channel, logger: logger)
        } catch {
            try? await group.shutdownGracefully()
            let reason: String
            if let io = error as? IOError, io.errnoCode == EADDRINUSE {
                reason = "address already in use (another agent or program listens there; choose another with --metrics-address)"
            } else {
                reason = "\(error)"
            }
            throw AgentError("cannot serve metrics on \(address): \(reason)")
        }
    }

    private init(group: MultiThreadedEventLoopGroup, channel: any Channel, logger: Logger) {
        self.group = group
        self.channel = channel
        self.logger = logger
    }

    /// The address actually bound (the port when 0 was asked).
    public var localAddress: SocketAddress? { channel.localAddress }

    public func run() async throws {
        try? await gracefulShutdown()
        try? await channel.close()
        try? await group.shutdownGracefully()
    }

    /// Closes without a service group (start failed after binding).
    public func close() async {
        try? await channel.close()
        try? await group.shutdownGracefully()
    }
}

final class HTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let router: MetricsServer.Router
    var head: HTTPRequestHead?

    init(router: @escaping MetricsServer.Router) {
        self.router = router
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
        case .body:
            break
        case .end:
            guard let head else { return }
            self.head = nil
            let path = String(head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
            let reply: HTTPReply = (head.method == .GET || head.method == .HEAD)
                ? router(head.method, path)
                : HTTPReply(status: .methodNotAllowed, body: "only GET and HEAD\n")
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: reply.contentType)
            headers.add(name: "Content-Length", value: "\(reply.body.utf8.count)")
            headers.add(name: "Connection", value: "close")
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: reply.status, headers: headers))), promise: nil)
            if head.method != .HEAD {
                var buffer = context.channel.allocator.buffer(capacity: reply.body.utf8.count)
                buffer.writeString(reply.body)
                context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
            }
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
