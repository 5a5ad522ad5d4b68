using System.Text;
using Proxy.Http.Telemetry;

namespace Proxy.Http.Tests.Telemetry;

public class AccessLogFormatterTests
{
    [Theory]
    [InlineData(0L, "0")]
    [InlineData(4L, "0")]            // 0.4 us rounds down
    [InlineData(5L, "0.001")]        // 0.5 us rounds up
    [InlineData(10_000L, "1")]
    [InlineData(25_000L, "2.5")]
    [InlineData(12_340L, "1.234")]
    [InlineData(10_100L, "1.01")]
    [InlineData(123_456_789L, "12345.679")]
    [InlineData(-50L, "0")]
    public void WriteMilliseconds_Ticks_ShortestDecimal(long ticks, string expected) =>
        Assert.Equal($"{{\"duration_ms\":{expected}}}", AccessLogFormatter.FormatMilliseconds(TimeSpan.FromTicks(ticks)));

    [Theory]
    [InlineData("2026-01-02T03:04:05.006Z", 2026, 1, 2, 3, 4, 5, 6)]
    [InlineData("1999-12-31T23:59:59.999Z", 1999, 12, 31, 23, 59, 59, 999)]
    public void FormatRfc3339Utc_Time_FixedWidth(string expected, int y, int mo, int d, int h, int mi, int s, int ms)
    {
        Span<byte> buffer = stackalloc byte[32];
        var n = AccessLogFormatter.FormatRfc3339Utc(new DateTimeOffset(y, mo, d, h, mi, s, ms, TimeSpan.Zero), buffer);
        Assert.Equal(expected, Encoding.ASCII.GetString(buffer[..n]));
    }
}
