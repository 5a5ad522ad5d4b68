using Proxy.Bench.E2e.Infrastructure;
using Proxy.Bench.E2e.LoadTools;

namespace Proxy.Bench.Tests.E2e.LoadTools;

public sealed class Iperf3ClientTests
{
    [Fact]
    public void Parse_CompletedTest_ReadsSumReceived()
    {
        const string json = """
            {
              "start": { "test_start": { "protocol": "TCP", "num_streams": 4, "reverse": 0 } },
              "intervals": [],
              "end": {
                "sum_sent": { "start": 0, "end": 3.0, "seconds": 3.0, "bytes": 3900000000, "bits_per_second": 10400000000.0, "retransmits": 0 },
                "sum_received": { "start": 0, "end": 3.0004, "seconds": 3.0004, "bytes": 3899000000, "bits_per_second": 10395852219.7 }
              }
            }
            """;

        var result = Iperf3Client.Parse(json);

        Assert.Equal(3_899_000_000, result.Bytes);
        Assert.Equal(3.0004, result.Seconds, 6);
        Assert.Equal(10_395_852_219.7, result.BitsPerSecond, 1);
        Assert.Equal(0, result.Operations);
    }

    [Fact]
    public void Parse_ErrorReport_ThrowsWithIperfMessage()
    {
        var error = Assert.Throws<E2eException>(() => Iperf3Client.Parse("""{ "start": {}, "intervals": [], "end": {}, "error": "the server is busy running a test. try again later" }"""));

        Assert.Contains("server is busy", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("")]
    [InlineData("{ \"start\": { \"connecting_to\"")]
    [InlineData("""{ "end": {} }""")]
    [InlineData("""{ "end": { "sum_received": { "bytes": 0, "seconds": 1.0, "bits_per_second": 0.0 } } }""")]
    public void Parse_NoUsableResult_Throws(string json)
    {
        Assert.Throws<E2eException>(() => Iperf3Client.Parse(json));
    }
}
