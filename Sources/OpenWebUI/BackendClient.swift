import AsyncHTTPClient
import Logging
import NIOCore
import NIOHTTP1
import SocketIO

/// Why a backend call produced no usable answer; the text is logged and never contains a token.
package struct BackendFailure: Error, CustomStringConvertible {
    enum Kind: String {
        /// No answer in time, or no connection.
        case unavailable = "backend_unavailable"
        /// An HTTP status other than 2xx.
        case refused = "backend_refused"
        /// A 2xx answer that is not the JSON expected.
        case invalidAnswer = "backend_invalid_answer"
        /// Not sent: the node's ``BackendCallGate`` had too many calls waiting, or this one waited too long.
        case busy = "backend_busy"
    }

    var kind: Kind
    var detail: String
    var status: Int?

    package var description: String { "\(kind.rawValue): \(detail)" }
}

/// The node's HTTP calls to the backend, each bounded by a timeout and, with a gate, by the node's rate and
/// concurrency limits. Answers are small JSON documents; a larger answer is refused rather than buffered.
package final class BackendClient: Sendable {
    static let maxAnswerBytes = 1 << 20

    let baseURL: String
    let timeout: TimeAmount
    let http: HTTPClient
    let gate: BackendCallGate?

    package init(baseURL: String, timeout: TimeAmount, gate: BackendCallGate? = nil, eventLoopGroup: EventLoopGroup) {
        self.baseURL = baseURL
        self.timeout = timeout
        self.gate = gate
        var configuration = HTTPClient.Configuration()
        // Each request carries a deadline of `timeout`; a read timeout as well would arm and cancel
        // a second timer on every read.
        configuration.timeout = .init(connect: timeout)
        configuration.redirectConfiguration = .disallow
        self.http = HTTPClient(eventLoopGroupProvider: .shared(eventLoopGroup), configuration: configuration)
    }

    package func shutdown() async {
        try? await http.shutdown()
    }

    /// GET `path` with the user's token; the answer parsed as JSON.
    func getJSON(_ path: String, bearer token: String, maxBytes: Int = maxAnswerBytes, on eventLoop: EventLoop)
        -> EventLoopFuture<JSONValue>
    {
        request(.GET, path, bearer: token, body: nil, maxBytes: maxBytes, on: eventLoop).flatMapThrowing { body in
            guard let body, body.readableBytes > 0 else {
                throw BackendFailure(kind: .invalidAnswer, detail: "GET \(path) answered an empty body")
            }
            do {
                return try JSONParser.parse(body)
            } catch {
                throw BackendFailure(kind: .invalidAnswer, detail: "GET \(path) answered invalid JSON: \(error)")
            }
        }
    }

    /// GET `path` with the user's token; the raw answer body (possibly empty), for calls whose status is the answer.
    func get(_ path: String, bearer token: String, on eventLoop: EventLoop) -> EventLoopFuture<ByteBuffer?> {
        request(.GET, path, bearer: token, body: nil, on: eventLoop)
    }

    /// POST a JSON body; the raw answer body (possibly empty).
    func postJSON(
        _ path: String,
        bearer token: String?,
        body: ByteBuffer,
        maxBytes: Int = maxAnswerBytes,
        on eventLoop: EventLoop
    ) -> EventLoopFuture<ByteBuffer?> {
        request(.POST, path, bearer: token, body: body, maxBytes: maxBytes, on: eventLoop)
    }

    private func request(
        _ method: HTTPMethod,
        _ path: String,
        bearer token: String?,
        body: ByteBuffer?,
        maxBytes: Int = maxAnswerBytes,
        on eventLoop: EventLoop
    ) -> EventLoopFuture<ByteBuffer?> {
        let request: HTTPClient.Request
        do {
            var headers = HTTPHeaders()
            headers.add(name: "Accept", value: "application/json")
            if let token { headers.add(name: "Authorization", value: "Bearer \(token)") }
            if body != nil { headers.add(name: "Content-Type", value: "application/json") }
            request = try HTTPClient.Request(
                url: baseURL + path,
                method: method,
                headers: headers,
                body: body.map { .byteBuffer($0) }
            )
        } catch {
            return eventLoop.makeFailedFuture(BackendFailure(kind: .unavailable, detail: "bad URL \(baseURL + path)"))
        }
        let description = "\(method) \(path)"
        let send: @Sendable () -> EventLoopFuture<HTTPClient.Response> = { [http, timeout] in
            let delegate = ResponseAccumulator(request: request, maxBodySize: maxBytes)
            // The deadline counts from the send: time spent waiting at the gate is bounded by the gate.
            return http.execute(
                request: request,
                delegate: delegate,
                eventLoop: .delegate(on: eventLoop),
                deadline: .now() + timeout
            ).futureResult.flatMapError { error in
                eventLoop.makeFailedFuture(BackendFailure(kind: .unavailable, detail: "\(description): \(error)"))
            }
        }
        let sent = gate.map { $0.run(on: eventLoop, send) } ?? send()
        return sent.flatMapThrowing { response in
            guard (200..<300).contains(response.status.code) else {
                throw BackendFailure(
                    kind: .refused,
                    detail: "\(description) answered \(response.status.code)",
                    status: Int(response.status.code)
                )
            }
            return response.body
        }.hop(to: eventLoop)
    }
}
