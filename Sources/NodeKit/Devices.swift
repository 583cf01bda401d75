import CLibUV

#if canImport(Glibc)
    import Glibc
#endif

extension TCPStream {
    /// Reads an already-open descriptor (a serial device, a FIFO) through this pipe handle.
    public func adopt(descriptor: Int32) throws(UVError) {
        let pipe = UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_pipe_t.self)
        try UVError.check(uv_pipe_open(pipe, descriptor), "uv_pipe_open")
    }
}

/// Opens the character devices and FIFOs barcode scanners appear as.
public enum ScannerDevice {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// A serial or USB-serial scanner: raw mode, no echo, no line discipline.
    public static func openSerial(_ path: String) throws -> Int32 {
        let fd = open(path, O_RDONLY | O_NOCTTY | O_NONBLOCK)
        guard fd >= 0 else {
            throw Failure(description: "cannot open scanner \(path): \(String(cString: strerror(errno)))")
        }
        var settings = termios()
        if tcgetattr(fd, &settings) == 0 {
            cfmakeraw(&settings)
            settings.c_cflag |= tcflag_t(CLOCAL | CREAD)
            _ = tcsetattr(fd, TCSANOW, &settings)
        }
        return fd
    }

    /// A FIFO another program writes scans into. Opened read-write so that a writer closing
    /// it does not end the stream (Linux semantics).
    public static func openFIFO(_ path: String) throws -> Int32 {
        var info = stat()
        if stat(path, &info) != 0 {
            guard mkfifo(path, 0o660) == 0 else {
                throw Failure(description: "cannot create scanner FIFO \(path): \(String(cString: strerror(errno)))")
            }
        } else if info.st_mode & S_IFMT != S_IFIFO {
            throw Failure(description: "\(path) exists and is not a FIFO")
        }
        let fd = open(path, O_RDWR | O_NONBLOCK)
        guard fd >= 0 else {
            throw Failure(description: "cannot open scanner FIFO \(path): \(String(cString: strerror(errno)))")
        }
        return fd
    }
}
