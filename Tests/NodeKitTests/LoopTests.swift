import Foundation
import Testing

@testable import NodeKit

@Suite struct LoopTests {
    /// With `stamped`, the client also reads when the kernel queued the answer, which lies
    /// between sending and the read returning (on the realtime clock).
    @Test(arguments: [false, true]) func aTCPEchoServerOnTheLoopAnswersABlockingClient(stamped: Bool) throws {
        let loop = try EventLoop()
        let listener = try TCPListener(loop: loop)
        var streams: [TCPStream] = []
        let port = try listener.listen(on: SocketAddress(host: "127.0.0.1", port: 0)) { stream in
            streams.append(stream)
            stream.onRead = { [unowned stream] bytes in stream.write(bytes) }
            try? stream.startReading()
        }
        let done = try LoopWaker(loop: loop) { loop.stop() }
        let signal = done.signal
        let answer = Answer()
        let client = Thread {
            defer { signal.wake() }
            guard let connection = try? BlockingLineClient(connectTo: SocketAddress(host: "127.0.0.1", port: port))
            else {
                return
            }
            func realNow() -> Double {
                var time = timespec()
                clock_gettime(CLOCK_REALTIME, &time)
                return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
            }
            if stamped { try? connection.stampArrivals() }
            var sent = 0.0
            var line: String?
            var read = 0.0
            var arrival: Double?
            // Linux turns stamping on a moment after the first request for it: the first
            // answers may come unstamped, and one within the next second must not.
            for attempt in 0..<(stamped ? 100 : 1) {
                if attempt > 0 { usleep(10_000) }
                sent = realNow()
                try? connection.send(line: "ping")
                line = try? connection.readLine()
                read = realNow()
                arrival = connection.lastArrival
                if arrival != nil { break }
            }
            let stampHolds = stamped ? arrival.map { $0 >= sent && $0 <= read } ?? false : arrival == nil
            answer.set(stampHolds ? line : "stamp \(String(describing: arrival)) outside \(sent)...\(read)")
        }
        client.start()
        loop.run()
        listener.close()
        done.close()
        loop.shutdown()
        #expect(answer.get() == "ping")
    }

    @Test func timersFireInOrder() throws {
        let loop = try EventLoop()
        var fired: [Int] = []
        let slow = try LoopTimer(loop: loop)
        let fast = try LoopTimer(loop: loop)
        slow.start(after: 30) {
            fired.append(2)
            slow.close()
        }
        fast.start(after: 5) {
            fired.append(1)
            fast.close()
        }
        loop.run()
        #expect(fired == [1, 2])
    }

    @Test func aRelayForwardsUntilCutAndAgainAfterRestore() throws {
        let loop = try EventLoop()
        let echo = try TCPListener(loop: loop)
        var streams: [TCPStream] = []
        let echoPort = try echo.listen(on: SocketAddress(host: "127.0.0.1", port: 0)) { stream in
            streams.append(stream)
            stream.onRead = { [unowned stream] bytes in stream.write(bytes) }
            try? stream.startReading()
        }
        let relay = try TCPRelay(
            loop: loop, listen: SocketAddress(host: "127.0.0.1", port: 0),
            target: SocketAddress(host: "127.0.0.1", port: echoPort))
        let port = relay.port
        let results = Answer()
        let control = Control()
        let waker = try LoopWaker(loop: loop) {
            switch control.take() {
            case "cut": relay.cut()
            case "restore": relay.restore()
            default: loop.stop()
            }
        }
        let signal = waker.signal
        let thread = Thread {
            let address = SocketAddress(host: "127.0.0.1", port: port)
            var log: [String] = []
            if let c = try? BlockingLineClient(connectTo: address, timeoutSeconds: 2) {
                try? c.send(line: "one")
                log.append((try? c.readLine()) ?? "none")
                control.put("cut")
                signal.wake()
                usleep(100_000)
                log.append((try? c.readLine()) ?? "cut")
            }
            control.put("restore")
            signal.wake()
            usleep(100_000)
            if let c = try? BlockingLineClient(connectTo: address, timeoutSeconds: 2) {
                try? c.send(line: "two")
                log.append((try? c.readLine()) ?? "none")
            }
            results.set(log.joined(separator: ","))
            control.put("stop")
            signal.wake()
        }
        thread.start()
        loop.run()
        relay.close()
        echo.close()
        waker.close()
        loop.shutdown()
        #expect(results.get() == "one,cut,two")
    }
}

final class Answer: @unchecked Sendable {
    private let lock = NSLock()
    private var value: String?
    func set(_ new: String?) { lock.withLock { value = new } }
    func get() -> String? { lock.withLock { value } }
}

final class Control: @unchecked Sendable {
    private let lock = NSLock()
    private var commands: [String] = []
    func put(_ command: String) { lock.withLock { commands.append(command) } }
    func take() -> String? { lock.withLock { commands.isEmpty ? nil : commands.removeFirst() } }
}
