import CHiredis
import NIOCore

/// Decodes RESP2 replies with hiredis's `redisReader`, building ``RESPValue``s directly.
///
/// hiredis is given its own reply-object functions (instead of the default `redisReply` tree that would be built with
/// one `malloc` per element and then copied again into Swift values): each callback appends the finished value to a
/// small stack, so a reply costs exactly its Swift values and one copy of each bulk payload out of the reader's
/// buffer.
///
/// Usable on its own in a `ByteToMessageHandler`, and embedded directly in the connection's channel handler (no extra
/// pipeline hop or `NIOAny` box per reply on the hot path).
public struct RESPDecoder: ByteToMessageDecoder {
    public typealias InboundOut = RESPValue

    /// Bytes of already-consumed input the reader may keep allocated between reads. hiredis frees its buffer when it
    /// is empty and larger than this; the default (16 KiB) is below one NIO read, which would make the reader free
    /// and re-grow its buffer on almost every read. 256 KiB covers the largest read NIO does by default and bounds
    /// the idle memory per connection.
    public static let defaultMaximumIdleBuffer = 256 * 1024

    @usableFromInline
    let reader: HiredisReader

    public init(maximumIdleBuffer: Int = RESPDecoder.defaultMaximumIdleBuffer) {
        self.reader = HiredisReader(maximumIdleBuffer: maximumIdleBuffer)
    }

    /// Largest piece of input handed to hiredis at once. hiredis compacts its buffer (a `memmove` of everything
    /// still unread) each time another KiB of it was consumed, so feeding a whole 256 KiB read at once would move
    /// ~128 bytes per byte read; in 8 KiB pieces it is a few bytes per byte.
    public static let feedChunkSize = 8 * 1024

    /// Decodes every complete reply in `buffer` (plus whatever was buffered before), calling `body` for each in
    /// order. Throws ``RedisError/Code/protocolError`` on malformed input, after delivering the replies before it.
    @inlinable
    public func decode(_ buffer: ByteBuffer, _ body: (RESPValue) -> Void) throws(RedisError) {
        var buffer = buffer
        while buffer.readableBytes > 0 {
            let chunk = buffer.readSlice(length: min(Self.feedChunkSize, buffer.readableBytes))!
            try self.reader.feed(chunk)
            while let value = try self.reader.next() {
                body(value)
            }
        }
    }

    /// Hands bytes to the reader (which copies them into its buffer). Prefer ``decode(_:_:)``, which feeds in
    /// pieces.
    @inlinable
    public func feed(_ buffer: ByteBuffer) throws(RedisError) {
        try self.reader.feed(buffer)
    }

    /// The next complete reply, or `nil` when more input is needed. Throws ``RedisError/Code/protocolError`` on
    /// malformed input; the reader is unusable afterwards and the connection must be closed.
    @inlinable
    public func next() throws(RedisError) -> RESPValue? {
        try self.reader.next()
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        // hiredis keeps its own buffer: hand it everything, emitting every complete reply (ByteToMessageHandler
        // does not call `decode` again once the cumulation buffer is empty).
        let input = buffer
        buffer.moveReaderIndex(to: buffer.writerIndex)
        try self.decode(input) { value in
            context.fireChannelRead(Self.wrapInboundOut(value))
        }
        return .needMoreData
    }

    public mutating func decodeLast(
        context: ChannelHandlerContext,
        buffer: inout ByteBuffer,
        seenEOF: Bool
    ) throws -> DecodingState {
        try self.decode(context: context, buffer: &buffer)
    }
}

@available(*, unavailable)
extension RESPDecoder: Sendable {}

/// Owns a hiredis `redisReader` and the reply being assembled. One per connection, used only on its event loop.
@usableFromInline
final class HiredisReader {
    private struct Frame {
        var values: [RESPValue]
        let expected: Int
    }

    private let reader: UnsafeMutablePointer<redisReader>
    private let functions: UnsafeMutablePointer<redisReplyObjectFunctions>
    private var stack: [Frame] = []
    private var root: RESPValue?
    private var failed: RedisError?
    /// The bytes fed last (see `sliceOfLastInput`).
    private var lastInput: ByteBuffer?
    fileprivate let allocator = ByteBufferAllocator()

    init(maximumIdleBuffer: Int) {
        self.functions = .allocate(capacity: 1)
        self.functions.initialize(
            to: redisReplyObjectFunctions(
                createString: { task, bytes, length in
                    HiredisReader.from(task).createString(task!, bytes, length)
                },
                createArray: { task, count in
                    HiredisReader.from(task).createArray(count)
                },
                createInteger: { task, value in
                    HiredisReader.from(task).complete(.integer(Int64(value)))
                },
                createNil: { task in
                    HiredisReader.from(task).complete(.null)
                },
                freeObject: { _ in
                    // Values live in Swift; the pointers hiredis holds are only a non-NULL marker.
                }
            )
        )
        guard let reader = redisReaderCreateWithFunctions(self.functions) else {
            fatalError("redisReaderCreateWithFunctions failed: out of memory")
        }
        self.reader = reader
        self.reader.pointee.maxbuf = maximumIdleBuffer
        self.reader.pointee.privdata = Unmanaged.passUnretained(self).toOpaque()
    }

    deinit {
        redisReaderFree(self.reader)
        self.functions.deinitialize(count: 1)
        self.functions.deallocate()
    }

    private static func from(_ task: UnsafePointer<redisReadTask>?) -> HiredisReader {
        Unmanaged<HiredisReader>.fromOpaque(task!.pointee.privdata).takeUnretainedValue()
    }

    /// The non-NULL value handed back to hiredis for every object it asks for (NULL would mean out of memory).
    private var marker: UnsafeMutableRawPointer { UnsafeMutableRawPointer(self.reader) }

    private func createString(
        _ task: UnsafePointer<redisReadTask>,
        _ bytes: UnsafeMutablePointer<CChar>?,
        _ length: Int
    ) -> UnsafeMutableRawPointer? {
        let raw = UnsafeRawBufferPointer(start: bytes, count: length)
        switch task.pointee.type {
        case REDIS_REPLY_STRING:
            if let slice = self.sliceOfLastInput(bytes, length: length) {
                return self.complete(.bulkString(slice))
            }
            var buffer = self.allocator.buffer(capacity: length)
            buffer.writeBytes(raw)
            return self.complete(.bulkString(buffer))
        case REDIS_REPLY_STATUS:
            return self.complete(.simpleString(String(decoding: raw, as: UTF8.self)))
        case REDIS_REPLY_ERROR:
            return self.complete(.error(String(decoding: raw, as: UTF8.self)))
        default:
            self.failed = RedisError(code: .protocolError, message: "unknown string reply type \(task.pointee.type)")
            return nil
        }
    }

    /// When the string lies entirely in the input fed last, the same bytes as a slice of that input: no allocation,
    /// no copy. The input fed last always sits at the tail of hiredis's buffer (hiredis only ever drops consumed
    /// bytes from the front), so a string's offset there maps to an index in the input.
    ///
    /// A slice keeps the whole read buffer it came from alive; values are meant to be relayed or parsed, not kept.
    private func sliceOfLastInput(_ bytes: UnsafeMutablePointer<CChar>?, length: Int) -> ByteBuffer? {
        guard let input = self.lastInput, let bytes, let start = self.reader.pointee.buf else { return nil }
        let offset = UnsafeRawPointer(bytes) - UnsafeRawPointer(start)
        let inputStart = self.reader.pointee.len - input.readableBytes
        guard offset >= inputStart else { return nil }
        return input.getSlice(at: input.readerIndex + offset - inputStart, length: length)
    }

    private func createArray(_ count: Int32) -> UnsafeMutableRawPointer? {
        if count <= 0 {
            guard count == 0 else {
                self.failed = RedisError(code: .protocolError, message: "invalid multi-bulk length \(count)")
                return nil
            }
            return self.complete(.array([]))
        }
        var values: [RESPValue] = []
        // The count is untrusted input: do not reserve gigabytes for a header whose elements never arrive.
        values.reserveCapacity(min(Int(count), 1024))
        self.stack.append(Frame(values: values, expected: Int(count)))
        return self.marker
    }

    private func complete(_ value: RESPValue) -> UnsafeMutableRawPointer? {
        var value = value
        while true {
            let top = self.stack.count - 1
            if top < 0 {
                self.root = value
                return self.marker
            }
            self.stack[top].values.append(value)
            if self.stack[top].values.count < self.stack[top].expected {
                return self.marker
            }
            value = .array(self.stack.removeLast().values)
        }
    }

    @usableFromInline
    func feed(_ buffer: ByteBuffer) throws(RedisError) {
        let status = buffer.withUnsafeReadableBytes { bytes -> Int32 in
            guard let base = bytes.baseAddress, bytes.count > 0 else { return REDIS_OK }
            return redisReaderFeed(self.reader, base.assumingMemoryBound(to: CChar.self), bytes.count)
        }
        if status != REDIS_OK {
            self.lastInput = nil
            throw self.readerError()
        }
        self.lastInput = buffer.readableBytes > 0 ? buffer : nil
    }

    @usableFromInline
    func next() throws(RedisError) -> RESPValue? {
        var reply: UnsafeMutableRawPointer? = nil
        if redisReaderGetReply(self.reader, &reply) != REDIS_OK {
            throw self.readerError()
        }
        guard reply != nil, let root = self.root else { return nil }
        self.root = nil
        return root
    }

    private func readerError() -> RedisError {
        if let failed = self.failed { return failed }
        let message = withUnsafeBytes(of: &self.reader.pointee.errstr) { bytes in
            String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
        }
        return RedisError(code: .protocolError, message: message.isEmpty ? "malformed RESP input" : message)
    }
}
