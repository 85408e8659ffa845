/// The dashboard page: inline style and script only, so it needs nothing but this node.
enum DashboardPage {
    static let html = #"""
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>Switchboard</title>
        <style>
          :root { color-scheme: light dark; --ok: #1a7f37; --bad: #cf222e; --muted: #6e7781; }
          body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; }
          h1 { font-size: 20px; margin: 0 0 4px; }
          .summary { display: flex; gap: 24px; margin: 12px 0 20px; flex-wrap: wrap; }
          .card { border: 1px solid #8884; border-radius: 8px; padding: 10px 14px; min-width: 140px; }
          .card b { display: block; font-size: 22px; }
          table { border-collapse: collapse; margin-bottom: 24px; min-width: 520px; }
          th, td { text-align: right; padding: 6px 12px; border-bottom: 1px solid #8883; }
          th:first-child, td:first-child { text-align: left; }
          .alive { color: var(--ok); } .dead { color: var(--bad); }
          #error { color: var(--bad); } .muted { color: var(--muted); }
        </style>
        </head>
        <body>
        <h1>Switchboard cluster</h1>
        <div class="muted">served by node <span id="this-node">…</span>, updated <span id="updated">never</span></div>
        <div id="error"></div>
        <form id="sign-in" hidden>
          <label>API key <input id="key" type="password" autocomplete="current-password" required></label>
          <button type="submit">Show the cluster</button>
        </form>
        <div class="summary">
          <div class="card">nodes alive<b id="nodes-alive">–</b></div>
          <div class="card">connections<b id="connections">–</b></div>
          <div class="card">users online<b id="users-online">–</b></div>
          <div class="card">messages/s<b id="rate">–</b></div>
          <div class="card">Redis<b id="redis-status">–</b></div>
        </div>
        <h2>Nodes</h2>
        <table id="nodes"><thead><tr><th>node</th><th>status</th><th>connections</th><th>sockets</th>
          <th>rooms</th><th>in/s</th><th>out/s</th></tr></thead><tbody></tbody></table>
        <h2>Top rooms</h2>
        <table id="top-rooms"><thead><tr><th>room</th><th>members</th></tr></thead><tbody></tbody></table>
        <script>
        "use strict";
        // The key stays in this tab (sessionStorage) and travels only in the Authorization header.
        let key = sessionStorage.getItem("switchboard-key") || "";
        const $ = (id) => document.getElementById(id);
        $("sign-in").addEventListener("submit", (e) => {
          e.preventDefault(); key = $("key").value; sessionStorage.setItem("switchboard-key", key);
          $("sign-in").hidden = true; refresh();
        });
        function cell(row, text, cls) {
          const td = row.insertCell(); td.textContent = text; if (cls) td.className = cls; return td;
        }
        function render(data) {
          $("this-node").textContent = data.this_node;
          $("updated").textContent = new Date().toLocaleTimeString();
          $("users-online").textContent = data.users_online < 0 ? "?" : data.users_online;
          $("redis-status").textContent = data.redis;
          const nodes = $("nodes").tBodies[0]; nodes.replaceChildren();
          let alive = 0, connections = 0, rate = 0;
          for (const n of data.nodes) {
            const row = nodes.insertRow(); row.dataset.node = n.id; row.dataset.alive = n.alive;
            cell(row, n.id);
            cell(row, n.alive ? "alive" : "dead", n.alive ? "alive" : "dead");
            for (const k of ["connections", "sockets", "rooms", "events_in_per_second", "events_out_per_second"]) {
              cell(row, n[k] === undefined ? "–" : n[k]);
            }
            if (n.alive) { alive++; connections += n.connections || 0; rate += (n.events_in_per_second || 0) + (n.events_out_per_second || 0); }
          }
          $("nodes-alive").textContent = alive;
          $("connections").textContent = connections;
          $("rate").textContent = rate.toFixed(1);
          const rooms = $("top-rooms").tBodies[0]; rooms.replaceChildren();
          for (const r of data.top_rooms) { const row = rooms.insertRow(); cell(row, r.room); cell(row, r.members); }
        }
        async function refresh() {
          if (!key) { $("sign-in").hidden = false; return; }
          try {
            const response = await fetch("dashboard/data".replace(/^/, location.pathname.replace(/dashboard\/?$/, "")),
                                          { headers: { "Authorization": "Bearer " + key }, cache: "no-store" });
            const body = await response.json();
            if (response.status === 401) { key = ""; sessionStorage.removeItem("switchboard-key"); $("sign-in").hidden = false; }
            if (!response.ok) throw new Error(body.error || response.status);
            $("error").textContent = ""; render(body);
          } catch (e) { $("error").textContent = "cannot load the cluster's data: " + e.message; }
        }
        refresh(); setInterval(refresh, 1000);
        </script>
        </body>
        </html>
        """#
}
