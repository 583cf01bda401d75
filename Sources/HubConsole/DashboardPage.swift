/// The dashboard: one self-contained page (no build step, no external assets). It asks the
/// API with the token given in the page (or in the address as #token=...), and writes every
/// value with textContent, never as markup.
enum DashboardPage {
    static let html = #"""
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>Loyalty hub — operator console</title>
        <style>
          body { font: 14px/1.4 system-ui, sans-serif; margin: 0; background: #f4f5f7; color: #1d2330; }
          header { background: #1d2330; color: #fff; padding: 10px 20px; display: flex; gap: 16px; align-items: center; }
          header h1 { font-size: 18px; margin: 0; flex: 1; }
          header input { width: 360px; }
          main { display: grid; grid-template-columns: repeat(auto-fit, minmax(460px, 1fr)); gap: 16px; padding: 16px; }
          section { background: #fff; border-radius: 6px; padding: 12px 16px; box-shadow: 0 1px 2px #0002; }
          h2 { font-size: 15px; margin: 0 0 8px; }
          table { border-collapse: collapse; width: 100%; }
          th, td { text-align: left; padding: 3px 6px; border-bottom: 1px solid #e3e5ea; }
          td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
          .online { color: #137333; font-weight: 600; }
          .offline { color: #b3261e; font-weight: 600; }
          .muted { color: #6b7280; }
          #message { color: #b3261e; }
        </style>
        </head>
        <body>
        <header>
          <h1>Loyalty hub</h1>
          <label>API token <input id="token" type="password" autocomplete="off" placeholder="lyt_..."></label>
          <button id="connect">Show</button>
          <span id="updated" class="muted"></span>
        </header>
        <p id="message"></p>
        <main>
          <section><h2>Stores</h2>
            <table id="stores"><thead><tr><th>Store</th><th>Partner</th><th>State</th><th class="num">Sync lag</th>
              <th class="num">Unsynced</th><th class="num">Merged</th></tr></thead><tbody></tbody></table></section>
          <section><h2>Member search</h2>
            <form id="member-form"><input id="member-query" placeholder="card number or +phone" size="28">
              <button>Search</button></form>
            <div id="member-result"></div></section>
          <section><h2>Recent transactions</h2>
            <table id="transactions"><thead><tr><th>When</th><th>Store</th><th>Type</th><th class="num">Amount</th>
              <th class="num">Points</th></tr></thead><tbody></tbody></table></section>
          <section><h2>RFM segments</h2><svg id="rfm" width="440" height="190" role="img" aria-label="members per segment"></svg></section>
          <section><h2>Clearing (this year)</h2><p class="muted">Points earned at the row's partner and spent at the column's.</p>
            <table id="clearing"><thead></thead><tbody></tbody></table><div id="netted"></div></section>
        </main>
        <script>
        "use strict";
        const $ = (id) => document.getElementById(id);
        const params = new URLSearchParams(location.hash.slice(1));
        if (params.get("token")) sessionStorage.setItem("token", params.get("token"));
        $("token").value = sessionStorage.getItem("token") || "";

        function el(tag, text, cls) {
          const node = document.createElement(tag);
          if (text !== undefined && text !== null) node.textContent = String(text);
          if (cls) node.className = cls;
          return node;
        }
        function row(cells) {
          const tr = document.createElement("tr");
          for (const [text, cls] of cells) tr.appendChild(el("td", text, cls));
          return tr;
        }
        function money(minor) { return minor === undefined ? "" : (minor / 100).toFixed(2); }
        function when(ms) { return ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) : "—"; }
        function lag(ms) {
          if (ms === null || ms === undefined) return "—";
          return ms < 1000 ? ms + " ms" : ms < 120000 ? (ms / 1000).toFixed(1) + " s" : Math.round(ms / 60000) + " min";
        }

        async function api(path) {
          const response = await fetch(path, { headers: { Authorization: "Bearer " + $("token").value.trim() } });
          const body = await response.json();
          if (!response.ok) throw new Error(body.error ? body.error.message : response.status);
          return body;
        }

        async function loadStores() {
          const data = await api("/api/v1/stores");
          const body = $("stores").tBodies[0];
          body.replaceChildren();
          for (const s of data.stores) {
            const state = s.revoked ? "revoked" : s.online ? "online" : "offline";
            const tr = row([[s.name], [s.partner], [state, s.online ? "online" : "offline"], [lag(s.syncLagMs), "num"],
              [s.edge ? s.edge.unsyncedOperations : "—", "num"], [s.mergedEntries, "num"]]);
            tr.dataset.store = s.name;
            tr.dataset.state = state;
            body.appendChild(tr);
          }
        }

        async function loadTransactions() {
          const data = await api("/api/v1/transactions?limit=20");
          const body = $("transactions").tBodies[0];
          body.replaceChildren();
          for (const t of data.transactions) {
            const points = t.type === "purchase" ? "+" + t.pointsEarned + (t.pointsRedeemed ? " / −" + t.pointsRedeemed : "")
              : t.type === "refund" ? String(t.pointsEarned) : "";
            const tr = row([[when(t.at)], [t.store], [t.type], [money(t.amount), "num"], [points, "num"]]);
            tr.dataset.type = t.type;
            body.appendChild(tr);
          }
        }

        async function loadRFM() {
          const svg = $("rfm");
          svg.replaceChildren();
          let data;
          try { data = await api("/api/v1/reports/rfm"); } catch (error) {
            const note = document.createElementNS("http://www.w3.org/2000/svg", "text");
            note.setAttribute("x", 4); note.setAttribute("y", 20); note.textContent = error.message;
            svg.appendChild(note);
            return;
          }
          const max = Math.max(1, ...data.segments.map((s) => s.members));
          data.segments.forEach((s, i) => {
            const y = 8 + i * 30;
            const width = Math.round(300 * s.members / max);
            const ns = "http://www.w3.org/2000/svg";
            const label = document.createElementNS(ns, "text");
            label.setAttribute("x", 0); label.setAttribute("y", y + 15); label.textContent = s.segment;
            const bar = document.createElementNS(ns, "rect");
            bar.setAttribute("x", 80); bar.setAttribute("y", y); bar.setAttribute("height", 20);
            bar.setAttribute("width", Math.max(width, 1)); bar.setAttribute("fill", "#3b6fd8");
            bar.dataset.segment = s.segment; bar.dataset.members = s.members;
            const count = document.createElementNS(ns, "text");
            count.setAttribute("x", 86 + width); count.setAttribute("y", y + 15); count.textContent = s.members;
            svg.append(label, bar, count);
          });
        }

        async function loadClearing() {
          const year = new Date().getUTCFullYear();
          const data = await api("/api/v1/reports/clearing?from=" + year + "-01-01&to=" + year + "-12-31");
          const partners = [...new Set([...Object.keys(data.gross),
            ...Object.values(data.gross).flatMap((row) => Object.keys(row))])].sort();
          const head = $("clearing").tHead;
          head.replaceChildren();
          const hr = document.createElement("tr");
          hr.appendChild(el("th", "earned at \\ spent at"));
          for (const p of partners) hr.appendChild(el("th", p, "num"));
          head.appendChild(hr);
          const body = $("clearing").tBodies[0];
          body.replaceChildren();
          for (const earned of partners) {
            const cells = [[earned]];
            for (const spent of partners) cells.push([(data.gross[earned] || {})[spent] || 0, "num"]);
            const tr = row(cells);
            tr.dataset.partner = earned;
            body.appendChild(tr);
          }
          const netted = $("netted");
          netted.replaceChildren();
          for (const n of data.netted) netted.appendChild(el("p", n.debtor + " owes " + n.creditor + " " + n.points + " points"));
        }

        async function searchMember(query) {
          const result = $("member-result");
          result.replaceChildren();
          const key = query.startsWith("+") ? "phone" : "card";
          try {
            const m = await api("/api/v1/members?" + key + "=" + encodeURIComponent(query));
            const table = document.createElement("table");
            table.id = "member";
            for (const [name, value] of [["Member", m.member], ["Card", m.cards.join(", ")], ["Balance", m.balance],
              ["Promo balance", m.promoBalance], ["Tier", m.tier], ["Spend this month", money(m.monthSpend)]]) {
              const tr = row([[name], [value, "num"]]);
              tr.dataset.field = name;
              table.appendChild(tr);
            }
            result.appendChild(table);
            const history = document.createElement("table");
            for (const h of m.history) history.appendChild(row([[when(h.at)], [h.store], [h.type], [money(h.amount), "num"]]));
            result.appendChild(history);
          } catch (error) {
            result.appendChild(el("p", error.message, "offline"));
          }
        }

        async function refresh() {
          if (!$("token").value.trim()) { $("message").textContent = "Enter an API token (hub token create)."; return; }
          sessionStorage.setItem("token", $("token").value.trim());
          const outcomes = await Promise.allSettled([loadStores(), loadTransactions(), loadRFM(), loadClearing()]);
          const failed = outcomes.filter((o) => o.status === "rejected").map((o) => o.reason.message);
          $("message").textContent = failed.length ? "Could not load: " + [...new Set(failed)].join("; ") : "";
          $("updated").textContent = "updated " + new Date().toLocaleTimeString();
          document.body.dataset.loaded = "true";
        }

        $("connect").addEventListener("click", refresh);
        $("member-form").addEventListener("submit", (event) => {
          event.preventDefault();
          searchMember($("member-query").value.trim());
        });
        refresh().then(() => {
          if (params.get("member")) { $("member-query").value = params.get("member"); return searchMember(params.get("member")); }
        }).then(() => { document.body.dataset.ready = "true"; });
        setInterval(refresh, 10000);
        </script>
        </body>
        </html>
        """#
}
