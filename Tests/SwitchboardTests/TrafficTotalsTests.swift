import Testing

@testable import Switchboard

@Suite("TrafficTotals from the metrics text")
struct TrafficTotalsTests {
    @Test("the event counters are summed over their series; other families are ignored")
    func parse() {
        let text = """
            # TYPE switchboard_socketio_events_received_total counter
            switchboard_socketio_events_received_total 12
            # TYPE switchboard_socketio_events_sent_total counter
            switchboard_socketio_events_sent_total{namespace="/"} 30
            switchboard_socketio_events_sent_total{namespace="/chat"} 5
            switchboard_socketio_events_sent_total_other 999
            switchboard_engineio_sent_bytes_total{transport="websocket"} 4096
            """
        #expect(TrafficTotals(prometheusText: text) == TrafficTotals(eventsIn: 12, eventsOut: 35))
        #expect(TrafficTotals(prometheusText: "") == TrafficTotals())
    }
}
