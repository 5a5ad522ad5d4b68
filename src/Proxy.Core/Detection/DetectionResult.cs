namespace Proxy.Core.Detection;

/// <summary>How detection ended.</summary>
public enum DetectionOutcome : byte
{
    /// <summary>The classifier decided from the peeked bytes.</summary>
    Detected,

    /// <summary>The client sent too little before the timeout (e.g. a server-speaks-first protocol): opaque.</summary>
    TimedOut,

    /// <summary>The destination port is configured opaque: nothing was peeked.</summary>
    Skipped,

    /// <summary>The client closed its side (FIN) before the classifier could decide: opaque.</summary>
    ClientClosed,

    /// <summary>The socket failed (reset, closed locally) while peeking: the connection is unusable.</summary>
    Failed,
}

/// <summary>The result of <see cref="ProtocolDetector.DetectAsync"/>. Nothing was consumed from the socket.</summary>
public readonly record struct DetectionResult(Protocol Protocol, DetectionOutcome Outcome, int BytesPeeked)
{
    public bool TimedOut => Outcome == DetectionOutcome.TimedOut;

    /// <summary>The <c>protocol</c> tag of <c>proxy_detect_total</c>: http1, h2, tls, opaque or timeout.</summary>
    public string MetricTag => Outcome == DetectionOutcome.TimedOut ? "timeout" : Protocol switch
    {
        Protocol.Http1 => "http1",
        Protocol.Http2 => "h2",
        Protocol.Tls => "tls",
        _ => "opaque",
    };
}
