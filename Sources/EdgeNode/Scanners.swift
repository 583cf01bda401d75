import Logging
import NodeKit
import SyncProtocol

/// Where a lane's barcode scanner delivers its lines.
public enum ScannerSource: Sendable, Equatable, CustomStringConvertible {
    /// A serial or USB-serial device (`/dev/ttyACM0`).
    case serial(String)
    /// A FIFO another program writes scans into.
    case fifo(String)
    /// A network scanner that connects to this TCP address and sends lines.
    case tcp(SocketAddress)

    public var description: String {
        switch self {
        case .serial(let path): return "tty:\(path)"
        case .fifo(let path): return "fifo:\(path)"
        case .tcp(let address): return "tcp:\(address)"
        }
    }
}

/// One lane's scanner.
public struct ScannerConfiguration: Sendable, Equatable {
    public var lane: String
    public var source: ScannerSource

    public init(lane: String, source: ScannerSource) {
        self.lane = lane
        self.source = source
    }

    /// Parses `LANE=tty:/dev/ttyACM0`, `LANE=fifo:/run/loyalty/lane1.scan` or `LANE=tcp:127.0.0.1:7501`.
    public init?(_ text: String) {
        guard let equals = text.firstIndex(of: "=") else { return nil }
        let lane = String(text[..<equals])
        let spec = String(text[text.index(after: equals)...])
        guard !lane.isEmpty, let colon = spec.firstIndex(of: ":") else { return nil }
        let kind = spec[..<colon]
        let rest = String(spec[spec.index(after: colon)...])
        switch kind {
        case "tty" where rest.hasPrefix("/"): source = .serial(rest)
        case "fifo" where rest.hasPrefix("/"): source = .fifo(rest)
        case "tcp":
            guard let address = SocketAddress(rest) else { return nil }
            source = .tcp(address)
        default: return nil
        }
        self.lane = lane
    }
}

/// Reads every configured scanner on the loop and hands each scanned line to `onScan`.
final class ScannerService {
    private let loop: EventLoop
    private let logger: Logger
    private var streams: [TCPStream] = []
    private var listeners: [TCPListener] = []
    private let onScan: (String, String) -> Void

    init(loop: EventLoop, logger: Logger, onScan: @escaping (_ lane: String, _ line: String) -> Void) {
        self.loop = loop
        self.logger = logger
        self.onScan = onScan
    }

    func start(_ configurations: [ScannerConfiguration]) throws {
        for configuration in configurations {
            switch configuration.source {
            case .serial(let path):
                try read(descriptor: try ScannerDevice.openSerial(path), lane: configuration.lane)
            case .fifo(let path):
                try read(descriptor: try ScannerDevice.openFIFO(path), lane: configuration.lane)
            case .tcp(let address):
                let listener = try TCPListener(loop: loop)
                try listener.listen(on: address) { [unowned self] stream in
                    self.attach(stream, lane: configuration.lane)
                }
                listeners.append(listener)
            }
            logger.info(
                "scanner attached", metadata: ["lane": "\(configuration.lane)", "source": "\(configuration.source)"])
        }
    }

    private func read(descriptor: Int32, lane: String) throws {
        let stream = try TCPStream(pipeOn: loop)
        try stream.adopt(descriptor: descriptor)
        attach(stream, lane: lane)
    }

    private func attach(_ stream: TCPStream, lane: String) {
        streams.append(stream)
        var lines = LineBuffer(maxLineBytes: 4096)
        stream.onRead = { [unowned self] bytes in
            do {
                for line in try lines.append(bytes) where !line.isEmpty {
                    onScan(lane, String(decoding: line, as: UTF8.self))
                }
            } catch {
                logger.warning("scanner sent an over-long line; discarded", metadata: ["lane": "\(lane)"])
                lines = LineBuffer(maxLineBytes: 4096)
            }
        }
        stream.onEnd = { [unowned self, unowned stream] error in
            logger.warning(
                "scanner stream ended", metadata: ["lane": "\(lane)", "error": "\(String(describing: error))"])
            streams.removeAll { $0 === stream }
        }
        do { try stream.startReading() } catch {
            logger.error("cannot read scanner", metadata: ["lane": "\(lane)", "error": "\(error)"])
        }
    }

    func close() {
        for stream in streams { stream.close() }
        for listener in listeners { listener.close() }
        streams.removeAll()
        listeners.removeAll()
    }
}
