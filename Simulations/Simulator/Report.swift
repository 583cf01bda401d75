import Foundation

/// A self-contained HTML report of a sweep: SVG charts, no external assets.
public enum SimulationReport {
    public static func html(_ summaries: [SimulationSummary]) -> String {
        var body = ""
        for summary in summaries {
            body += "<section><h2>Seed \(summary.seed)</h2><p class=\"muted\">\(escape(summary.faults))</p>"
            body +=
                "<p>\(summary.purchasesAcknowledged) purchases acknowledged, \(summary.purchasesRefused) refused, "
                + "\(summary.refundsAcknowledged) refunds, \(summary.registrations) registrations, "
                + "\(summary.promosCredited) promo codes credited (\(summary.promosRefused) refused); "
                + "\(summary.partitions) partitions, \(summary.crashes) crashes; "
                + "\(summary.messagesLost) of \(summary.messagesSent) messages lost; "
                + "every replica converged \(summary.convergenceMilliseconds) ms after the final heal.</p>"
            body += chart(
                title: "Purchases per minute (partition heals marked)", series: [("purchases", summary.perMinute)],
                marks: summary.heals)
            let stores = summary.unsyncedSamples.first?.count ?? 0
            body += chart(
                title: "Operations not yet at the hub, per store (every 10 simulated minutes)",
                series: (0..<stores).map { store in ("store-\(store + 1)", summary.unsyncedSamples.map { $0[store] }) },
                marks: [])
            body += chart(
                title:
                    "Convergence after each partition heal (ms until the healed stores had caught up), in heal order",
                series: [("ms", summary.healConvergence)], marks: [])
            let requested = max(1, summary.offlineRedemptionsRequested)
            body += bar(
                title: "Offline redemption requests fully served",
                value: summary.offlineRedemptionsServed, of: requested)
            body += bar(
                title: "Convergence after the final heal (ms, of the bound)",
                value: Int(summary.convergenceMilliseconds), of: 600_000)
            body += "</section>"
        }
        return """
            <!doctype html><html lang="en"><head><meta charset="utf-8"><title>Simulation report</title>
            <style>body{font:14px/1.4 system-ui,sans-serif;margin:20px;color:#1d2330}section{margin-bottom:32px}
            .muted{color:#6b7280}svg{background:#f7f8fa;border:1px solid #e3e5ea}</style></head><body>
            <h1>Simulation report</h1><p>\(summaries.count) seed(s); every invariant held in each.</p>
            \(body)</body></html>
            """
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
    }

    static let palette = ["#3b6fd8", "#d8573b", "#2e9e5b", "#a33bd8", "#d8a93b", "#3bbad8"]

    static func chart(title: String, series: [(String, [Int])], marks: [Int]) -> String {
        let width = 900.0
        let height = 200.0
        let points = max(1, series.map(\.1.count).max() ?? 1)
        let top = Double(max(1, series.flatMap(\.1).max() ?? 1))
        var svg = "<h3>\(escape(title))</h3><svg width=\"\(Int(width))\" height=\"\(Int(height) + 20)\">"
        for mark in marks where mark < points {
            let x = Double(mark) / Double(points) * width
            svg += "<line x1=\"\(x)\" y1=\"0\" x2=\"\(x)\" y2=\"\(height)\" stroke=\"#aaa\" stroke-dasharray=\"3,3\"/>"
        }
        for (index, (name, values)) in series.prefix(palette.count).enumerated() {
            let path = values.enumerated().map { offset, value in
                String(
                    format: "%.1f,%.1f", Double(offset) / Double(points) * width,
                    height - Double(value) / top * (height - 10))
            }.joined(separator: " ")
            svg +=
                "<polyline fill=\"none\" stroke=\"\(palette[index])\" stroke-width=\"1.5\" points=\"\(path)\"><title>\(escape(name))</title></polyline>"
            svg +=
                "<text x=\"\(8 + index * 90)\" y=\"\(Int(height) + 16)\" fill=\"\(palette[index])\">\(escape(name))</text>"
        }
        svg += "<text x=\"\(Int(width) - 80)\" y=\"14\">max \(Int(top))</text></svg>"
        return svg
    }

    static func bar(title: String, value: Int, of total: Int) -> String {
        let share = min(1, Double(value) / Double(max(total, 1)))
        return "<h3>\(escape(title)): \(value) of \(total)</h3><svg width=\"400\" height=\"24\">"
            + "<rect width=\"\(Int(share * 400))\" height=\"24\" fill=\"#2e9e5b\"/></svg>"
    }
}
