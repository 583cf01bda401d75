/// The dashboard: one self-contained page (no build step, no external assets).
enum DashboardPage {
    static let html = "<!doctype html><title>Loyalty hub</title>"
}
