import NIOCore

/// A value that can be sent as one argument of a Redis command (a RESP bulk string).
public protocol RESPArgument: Sendable {
    /// Writes the argument as a RESP bulk string, `$<length>\r\n<bytes>\r\n`, directly into `buffer`.
    func writeBulkString(into buffer: inout ByteBuffer)
}

extension String: RESPArgument {
    @inlinable
    public func writeBulkString(into buffer: inout ByteBuffer) {
        var string = self
        string.withUTF8 { utf8 in
            buffer.writeRESPBulkString(UnsafeRawBufferPointer(utf8))
        }
    }
}

extension Substring: RESPArgument {
    @inlinable
    public func writeBulkString(into buffer: inout ByteBuffer) {
        var string = self
        string.withUTF8 { utf8 in
            buffer.writeRESPBulkString(UnsafeRawBufferPointer(utf8))
        }
    }
}

extension StaticString: RESPArgument {
    @inlinable
    public func writeBulkString(into buffer: inout ByteBuffer) {
        self.withUTF8Buffer { utf8 in
            buffer.writeRESPBulkString(UnsafeRawBufferPointer(utf8))
        }
    }
}

extension ByteBuffer: RESPArgument {
    @inlinable
    public func writeBulkString(into buffer: inout ByteBuffer) {
        self.withUnsafeReadableBytes { buffer.writeRESPBulkString($0) }
    }
}

extension Array: RESPArgument where Element == UInt8 {
    @inlinable
    public func writeBulkString(into buffer: inout ByteBuffer) {
        self.withUnsafeBytes { buffer.writeRESPBulkString($0) }
    }
}

extension Int: RESPArgument {
    @inlinable
    public func writeBulkString(into buffer: inout ByteBuffer) {
        Int64(self).writeBulkString(into: &buffer)
    }
}

extension Int64: RESPArgument {
    @inlinable
    public func writeBulkString(into buffer: inout ByteBuffer) {
        // `$<digits>\r\n<value>\r\n`: the digits are written into a scratch tuple once and copied twice.
        var scratch: (UInt64, UInt64, UInt64) = (0, 0, 0)
        withUnsafeMutableBytes(of: &scratch) { bytes in
            buffer.writeRESPBulkString(RESPWriting.formatDecimal(self, into: bytes))
        }
    }
}

extension Double: RESPArgument {
    @inlinable
    public func writeBulkString(into buffer: inout ByteBuffer) {
        self.description.writeBulkString(into: &buffer)
    }
}

/// One encoded command: a RESP array of bulk strings (`*N\r\n$len\r\narg\r\n…`), ready to be written.
///
/// ```swift
/// let command = RESPCommand("SET", key, payload, "PX", 5000)
/// ```
public struct RESPCommand: Sendable {
    /// The encoded bytes.
    public var buffer: ByteBuffer { self._buffer }
    @usableFromInline
    var _buffer: ByteBuffer

    /// Encodes the arguments (the first one is the command name) straight into one buffer.
    @inlinable
    public init<each Argument: RESPArgument>(_ arguments: repeat each Argument) {
        self._buffer = ByteBufferAllocator().buffer(capacity: 64)
        RESPWriting.writeCommand(repeat each arguments, into: &self._buffer)
    }

    /// Encodes `name` followed by every element of `arguments`.
    @inlinable
    public init<Arguments: Collection>(_ name: String, arguments: Arguments) where Arguments.Element: RESPArgument {
        self._buffer = ByteBufferAllocator().buffer(capacity: 64)
        RESPWriting.writeCommand(name, arguments: arguments, into: &self._buffer)
    }

    /// Encodes `name` followed by `arguments` of mixed types.
    public init(_ name: String, arguments: [any RESPArgument]) {
        self._buffer = ByteBufferAllocator().buffer(capacity: 64)
        self._buffer.writeRESPLengthHeader(UInt8(ascii: "*"), arguments.count + 1)
        name.writeBulkString(into: &self._buffer)
        for argument in arguments {
            argument.writeBulkString(into: &self._buffer)
        }
    }
}

/// Many commands encoded back to back into one buffer: written with one write and one flush, answered by one future
/// holding every reply in order.
public struct RedisPipeline: Sendable {
    /// The encoded commands.
    public var buffer: ByteBuffer { self._buffer }
    /// How many commands (and so replies) the pipeline holds.
    public var count: Int { self._count }
    @usableFromInline
    var _buffer: ByteBuffer
    @usableFromInline
    var _count: Int = 0

    public init(capacity: Int = 4096) {
        self._buffer = ByteBufferAllocator().buffer(capacity: capacity)
    }

    public var isEmpty: Bool { self.count == 0 }

    @inlinable
    public mutating func append<each Argument: RESPArgument>(_ arguments: repeat each Argument) {
        RESPWriting.writeCommand(repeat each arguments, into: &self._buffer)
        self._count += 1
    }

    public mutating func append(_ command: RESPCommand) {
        self._buffer.writeImmutableBuffer(command.buffer)
        self._count += 1
    }

    /// Forgets the commands but keeps the buffer's memory for the next batch.
    public mutating func removeAll() {
        self._buffer.clear()
        self._count = 0
    }
}

/// Namespace for the RESP writing helpers.
public enum RESPWriting {
    @inlinable
    public static func writeCommand<each Argument: RESPArgument>(
        _ arguments: repeat each Argument,
        into buffer: inout ByteBuffer
    ) {
        var count = 0
        for _ in repeat each arguments {
            count += 1
        }
        buffer.writeRESPLengthHeader(UInt8(ascii: "*"), count)
        for argument in repeat each arguments {
            argument.writeBulkString(into: &buffer)
        }
    }

    @inlinable
    public static func writeCommand<Arguments: Collection>(
        _ name: String,
        arguments: Arguments,
        into buffer: inout ByteBuffer
    ) where Arguments.Element: RESPArgument {
        buffer.writeRESPLengthHeader(UInt8(ascii: "*"), arguments.count + 1)
        name.writeBulkString(into: &buffer)
        for argument in arguments {
            argument.writeBulkString(into: &buffer)
        }
    }

    /// Writes the decimal digits of `value` at the end of `scratch` (at least 20 bytes) and returns them.
    @inlinable
    static func formatDecimal(_ value: Int64, into scratch: UnsafeMutableRawBufferPointer) -> UnsafeRawBufferPointer {
        var magnitude = value.magnitude
        var index = scratch.count
        repeat {
            index -= 1
            scratch[index] = UInt8(truncatingIfNeeded: magnitude % 10) &+ UInt8(ascii: "0")
            magnitude /= 10
        } while magnitude > 0
        if value < 0 {
            index -= 1
            scratch[index] = UInt8(ascii: "-")
        }
        return UnsafeRawBufferPointer(rebasing: scratch[index...])
    }
}

extension ByteBuffer {
    /// `<marker><count>\r\n`, e.g. `*3\r\n` or `$5\r\n`.
    @inlinable
    mutating func writeRESPLengthHeader(_ marker: UInt8, _ count: Int) {
        if count < 10 {
            // The common case (argument counts, short keys) in a single write.
            self.writeMultipleIntegers(marker, UInt8(truncatingIfNeeded: count) &+ UInt8(ascii: "0"), UInt16(0x0D0A))
            return
        }
        self.writeWithUnsafeMutableBytes(minimumWritableBytes: 24) { out in
            out[0] = marker
            let end = RESPWriting.putDecimal(count, into: out, at: 1)
            out[end] = 0x0D
            out[end + 1] = 0x0A
            return end + 2
        }
    }

    @inlinable
    mutating func writeRESPCRLF() {
        self.writeInteger(UInt16(0x0D0A))
    }

    /// `$<length>\r\n<bytes>\r\n` with one capacity check and one write (this runs for every argument).
    @inlinable
    mutating func writeRESPBulkString(_ bytes: UnsafeRawBufferPointer) {
        let count = bytes.count
        self.writeWithUnsafeMutableBytes(minimumWritableBytes: count + 26) { out in
            out[0] = UInt8(ascii: "$")
            var index = RESPWriting.putDecimal(count, into: out, at: 1)
            out[index] = 0x0D
            out[index + 1] = 0x0A
            index += 2
            if count > 0 {
                (out.baseAddress! + index).copyMemory(from: bytes.baseAddress!, byteCount: count)
                index += count
            }
            out[index] = 0x0D
            out[index + 1] = 0x0A
            return index + 2
        }
    }
}

extension RESPWriting {
    /// Writes the decimal digits of the non-negative `value` at `index`; returns the index after them.
    @inlinable
    static func putDecimal(_ value: Int, into out: UnsafeMutableRawBufferPointer, at index: Int) -> Int {
        var digits = 1
        var rest = value / 10
        while rest > 0 {
            digits += 1
            rest /= 10
        }
        var remaining = value
        var position = index + digits
        repeat {
            position -= 1
            out[position] = UInt8(truncatingIfNeeded: remaining % 10) &+ UInt8(ascii: "0")
            remaining /= 10
        } while remaining > 0
        return index + digits
    }
}

extension RedisPipeline {
    @inlinable
    public mutating func append<A0: RESPArgument>(_ a0: A0) {
        self._buffer.writeRESPLengthHeader(UInt8(ascii: "*"), 1)
        a0.writeBulkString(into: &self._buffer)
        self._count += 1
    }

    @inlinable
    public mutating func append<A0: RESPArgument, A1: RESPArgument>(_ a0: A0, _ a1: A1) {
        self._buffer.writeRESPLengthHeader(UInt8(ascii: "*"), 2)
        a0.writeBulkString(into: &self._buffer)
        a1.writeBulkString(into: &self._buffer)
        self._count += 1
    }

    @inlinable
    public mutating func append<A0: RESPArgument, A1: RESPArgument, A2: RESPArgument>(_ a0: A0, _ a1: A1, _ a2: A2) {
        self._buffer.writeRESPLengthHeader(UInt8(ascii: "*"), 3)
        a0.writeBulkString(into: &self._buffer)
        a1.writeBulkString(into: &self._buffer)
        a2.writeBulkString(into: &self._buffer)
        self._count += 1
    }

    @inlinable
    public mutating func append<A0: RESPArgument, A1: RESPArgument, A2: RESPArgument, A3: RESPArgument>(
        _ a0: A0,
        _ a1: A1,
        _ a2: A2,
        _ a3: A3
    ) {
        self._buffer.writeRESPLengthHeader(UInt8(ascii: "*"), 4)
        a0.writeBulkString(into: &self._buffer)
        a1.writeBulkString(into: &self._buffer)
        a2.writeBulkString(into: &self._buffer)
        a3.writeBulkString(into: &self._buffer)
        self._count += 1
    }

    @inlinable
    public mutating func append<
        A0: RESPArgument,
        A1: RESPArgument,
        A2: RESPArgument,
        A3: RESPArgument,
        A4: RESPArgument
    >(_ a0: A0, _ a1: A1, _ a2: A2, _ a3: A3, _ a4: A4) {
        self._buffer.writeRESPLengthHeader(UInt8(ascii: "*"), 5)
        a0.writeBulkString(into: &self._buffer)
        a1.writeBulkString(into: &self._buffer)
        a2.writeBulkString(into: &self._buffer)
        a3.writeBulkString(into: &self._buffer)
        a4.writeBulkString(into: &self._buffer)
        self._count += 1
    }

    @inlinable
    public mutating func append<
        A0: RESPArgument,
        A1: RESPArgument,
        A2: RESPArgument,
        A3: RESPArgument,
        A4: RESPArgument,
        A5: RESPArgument
    >(_ a0: A0, _ a1: A1, _ a2: A2, _ a3: A3, _ a4: A4, _ a5: A5) {
        self._buffer.writeRESPLengthHeader(UInt8(ascii: "*"), 6)
        a0.writeBulkString(into: &self._buffer)
        a1.writeBulkString(into: &self._buffer)
        a2.writeBulkString(into: &self._buffer)
        a3.writeBulkString(into: &self._buffer)
        a4.writeBulkString(into: &self._buffer)
        a5.writeBulkString(into: &self._buffer)
        self._count += 1
    }
}

extension RESPCommand {
    @usableFromInline
    init(encoded buffer: ByteBuffer) {
        self._buffer = buffer
    }

    @inlinable
    public init<A0: RESPArgument>(_ a0: A0) {
        var buffer = ByteBufferAllocator().buffer(capacity: 64)
        buffer.writeRESPLengthHeader(UInt8(ascii: "*"), 1)
        a0.writeBulkString(into: &buffer)
        self._buffer = buffer
    }

    @inlinable
    public init<A0: RESPArgument, A1: RESPArgument>(_ a0: A0, _ a1: A1) {
        var buffer = ByteBufferAllocator().buffer(capacity: 64)
        buffer.writeRESPLengthHeader(UInt8(ascii: "*"), 2)
        a0.writeBulkString(into: &buffer)
        a1.writeBulkString(into: &buffer)
        self._buffer = buffer
    }

    @inlinable
    public init<A0: RESPArgument, A1: RESPArgument, A2: RESPArgument>(_ a0: A0, _ a1: A1, _ a2: A2) {
        var buffer = ByteBufferAllocator().buffer(capacity: 64)
        buffer.writeRESPLengthHeader(UInt8(ascii: "*"), 3)
        a0.writeBulkString(into: &buffer)
        a1.writeBulkString(into: &buffer)
        a2.writeBulkString(into: &buffer)
        self._buffer = buffer
    }

    @inlinable
    public init<A0: RESPArgument, A1: RESPArgument, A2: RESPArgument, A3: RESPArgument>(
        _ a0: A0,
        _ a1: A1,
        _ a2: A2,
        _ a3: A3
    ) {
        var buffer = ByteBufferAllocator().buffer(capacity: 64)
        buffer.writeRESPLengthHeader(UInt8(ascii: "*"), 4)
        a0.writeBulkString(into: &buffer)
        a1.writeBulkString(into: &buffer)
        a2.writeBulkString(into: &buffer)
        a3.writeBulkString(into: &buffer)
        self._buffer = buffer
    }

    @inlinable
    public init<A0: RESPArgument, A1: RESPArgument, A2: RESPArgument, A3: RESPArgument, A4: RESPArgument>(
        _ a0: A0,
        _ a1: A1,
        _ a2: A2,
        _ a3: A3,
        _ a4: A4
    ) {
        var buffer = ByteBufferAllocator().buffer(capacity: 64)
        buffer.writeRESPLengthHeader(UInt8(ascii: "*"), 5)
        a0.writeBulkString(into: &buffer)
        a1.writeBulkString(into: &buffer)
        a2.writeBulkString(into: &buffer)
        a3.writeBulkString(into: &buffer)
        a4.writeBulkString(into: &buffer)
        self._buffer = buffer
    }

    @inlinable
    public init<
        A0: RESPArgument,
        A1: RESPArgument,
        A2: RESPArgument,
        A3: RESPArgument,
        A4: RESPArgument,
        A5: RESPArgument
    >(_ a0: A0, _ a1: A1, _ a2: A2, _ a3: A3, _ a4: A4, _ a5: A5) {
        var buffer = ByteBufferAllocator().buffer(capacity: 64)
        buffer.writeRESPLengthHeader(UInt8(ascii: "*"), 6)
        a0.writeBulkString(into: &buffer)
        a1.writeBulkString(into: &buffer)
        a2.writeBulkString(into: &buffer)
        a3.writeBulkString(into: &buffer)
        a4.writeBulkString(into: &buffer)
        a5.writeBulkString(into: &buffer)
        self._buffer = buffer
    }
}
