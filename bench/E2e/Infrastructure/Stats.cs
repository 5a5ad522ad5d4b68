using System.Globalization;

namespace Proxy.Bench.E2e.Infrastructure;

/// <summary>Median with min and max of a set of measurements.</summary>
internal readonly record struct Summary(double Median, double Min, double Max, int Count)
{
    public static Summary? Of(IEnumerable<double> values)
    {
        var sorted = values.Where(double.IsFinite).Order().ToArray();
        if (sorted.Length == 0)
        {
            return null;
        }

        var middle = sorted.Length / 2;
        var median = sorted.Length % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
        return new Summary(median, sorted[0], sorted[^1], sorted.Length);
    }

    /// <summary>"median (min–max)" with the given number format, e.g. "F2"; just the median when all values are equal.</summary>
    public string Format(string format) =>
        Count == 1 || Min == Max
            ? Median.ToString(format, CultureInfo.InvariantCulture)
            : string.Create(CultureInfo.InvariantCulture, $"{Median.ToString(format, CultureInfo.InvariantCulture)} ({Min.ToString(format, CultureInfo.InvariantCulture)}–{Max.ToString(format, CultureInfo.InvariantCulture)})");
}

internal static class SummaryFormatting
{
    public static string Format(this Summary? summary, string format) => summary is { } s ? s.Format(format) : "–";
}
