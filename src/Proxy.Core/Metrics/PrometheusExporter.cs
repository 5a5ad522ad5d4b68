using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Globalization;
using System.Text;

namespace Proxy.Core.Metrics;

/// <summary>
/// Aggregates the proxy's System.Diagnostics.Metrics instruments in memory and renders them in the
/// Prometheus text exposition format (version 0.0.4). Counters become <c>_total</c> counters,
/// up-down counters gauges, histograms cumulative buckets. Recording is lock-free and allocates only
/// when a new tag combination (series) is seen for the first time. A histogram uses the bucket
/// boundaries of its <see cref="InstrumentAdvice{T}.HistogramBucketBoundaries"/> when it has them,
/// else <see cref="DefaultBuckets"/> (milliseconds). Up to <see cref="MaxTags"/> tags per series
/// (the inline capacity of <see cref="System.Diagnostics.TagList"/>); further tags are ignored.
/// </summary>
public sealed class PrometheusExporter : IDisposable
{
    /// <summary>Tags kept per series: the inline capacity of <see cref="System.Diagnostics.TagList"/>.</summary>
    public const int MaxTags = 8;

    /// <summary>Series remembered by tag identity per instrument (each entry a few hundred bytes).</summary>
    private const int MaxReferenceEntries = 4096;

    private static readonly double[] DefaultBuckets = [0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];

    private readonly MeterListener _listener = new();
    private readonly ConcurrentDictionary<Instrument, InstrumentState> _instruments = new();
    private readonly Meter _meter;

    /// <summary>Exports the instruments of one meter (one sidecar; tests may run several in a process).</summary>
    public PrometheusExporter(Meter meter)
    {
        _meter = meter;
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (ReferenceEquals(instrument.Meter, _meter))
            {
                // The instrument's state rides along as the measurement state: no lookup per measurement.
                var state = _instruments.GetOrAdd(instrument, static i => new InstrumentState(i));
                listener.EnableMeasurementEvents(instrument, state);
            }
        };
        _listener.SetMeasurementEventCallback<long>(static (_, value, tags, state) => Record((InstrumentState)state!, value, tags));
        _listener.SetMeasurementEventCallback<double>(static (_, value, tags, state) => Record((InstrumentState)state!, value, tags));
        _listener.SetMeasurementEventCallback<int>(static (_, value, tags, state) => Record((InstrumentState)state!, value, tags));
        _listener.Start();
    }

    private static void Record(InstrumentState state, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        var key = new SeriesKey(tags);

        // Fastest path: the very tag objects of the instrument's last measurement (one route under load), compared by
        // reference without a lookup. Then the same tag objects as before (callers pass config strings and interned
        // constants), found by reference without hashing string contents. Else by value, then remembered by
        // reference (bounded).
        var series = Volatile.Read(ref state.Last);
        if (series is null || !series.Key.ReferenceEquals(in key))
        {
            if (!state.ByReference.TryGetValue(key, out series))
            {
                series = SlowFind(state, key);
            }

            Volatile.Write(ref state.Last, series);
        }

        if (state.IsObservable)
        {
            // Observable instruments report their current value (a running total for a counter) when polled.
            series.Set(value);
        }
        else
        {
            series.Record(value, state.Bounds);
        }
    }

    private static Series SlowFind(InstrumentState state, SeriesKey key)
    {
        if (!state.Series.TryGetValue(key, out var series))
        {
            series = state.Series.GetOrAdd(key, static (k, s) => new Series(k, s.Bounds is { } b ? b.Length + 1 : 0), state);
        }

        // Tag values that are fresh objects every time (boxed numbers, built strings) would fill this map: stop at a cap.
        if (Volatile.Read(ref state.ByReferenceCount) < MaxReferenceEntries && state.ByReference.TryAdd(key, series))
        {
            Interlocked.Increment(ref state.ByReferenceCount);
        }

        return series;
    }

    /// <summary>Renders every series in the Prometheus text format.</summary>
    public string Render()
    {
        // Poll observable instruments (e.g. proxy_process_allocated_bytes) so their series are current.
        _listener.RecordObservableInstruments();
        var sb = new StringBuilder(4096);
        foreach (var state in _instruments.Values.OrderBy(static s => s.Instrument.Name, StringComparer.Ordinal))
        {
            var name = state.Instrument.Name;
            var type = state.IsHistogram ? "histogram" : state.IsGauge ? "gauge" : "counter";
            var sample = state.IsHistogram || state.IsGauge ? name : name + "_total";
            sb.Append("# HELP ").Append(sample).Append(' ').Append(state.Instrument.Description).Append('\n');
            sb.Append("# TYPE ").Append(sample).Append(' ').Append(type).Append('\n');
            foreach (var (key, series) in state.Series.OrderBy(static p => p.Key.ToString(), StringComparer.Ordinal))
            {
                if (!state.IsHistogram)
                {
                    sb.Append(sample);
                    AppendLabels(sb, series.Names, key, null);
                    sb.Append(' ').Append(Format(series.Sum)).Append('\n');
                    continue;
                }

                long cumulative = 0;
                var bounds = state.Bounds!;
                for (var i = 0; i < bounds.Length; i++)
                {
                    cumulative += Volatile.Read(ref series.Buckets[i]);
                    sb.Append(name).Append("_bucket");
                    AppendLabels(sb, series.Names, key, Format(bounds[i]));
                    sb.Append(' ').Append(cumulative).Append('\n');
                }

                sb.Append(name).Append("_bucket");
                AppendLabels(sb, series.Names, key, "+Inf");
                sb.Append(' ').Append(series.Count).Append('\n');
                sb.Append(name).Append("_sum");
                AppendLabels(sb, series.Names, key, null);
                sb.Append(' ').Append(Format(series.Sum)).Append('\n');
                sb.Append(name).Append("_count");
                AppendLabels(sb, series.Names, key, null);
                sb.Append(' ').Append(series.Count).Append('\n');
            }
        }

        return sb.ToString();
    }

    private static string Format(double value) => value.ToString("R", CultureInfo.InvariantCulture);

    private static void AppendLabels(StringBuilder sb, string[] names, SeriesKey key, string? le)
    {
        if (names.Length == 0 && le is null)
        {
            return;
        }

        sb.Append('{');
        for (var i = 0; i < names.Length; i++)
        {
            if (i > 0)
            {
                sb.Append(',');
            }

            sb.Append(names[i]).Append("=\"");
            AppendEscaped(sb, key.Value(i));
            sb.Append('"');
        }

        if (le is not null)
        {
            sb.Append(names.Length > 0 ? "," : "").Append("le=\"").Append(le).Append('"');
        }

        sb.Append('}');
    }

    private static void AppendEscaped(StringBuilder sb, object? value)
    {
        foreach (var c in Convert.ToString(value, CultureInfo.InvariantCulture) ?? "")
        {
            _ = c switch
            {
                '\\' => sb.Append("\\\\"),
                '"' => sb.Append("\\\""),
                '\n' => sb.Append("\\n"),
                _ => sb.Append(c),
            };
        }
    }

    public void Dispose() => _listener.Dispose();

    private sealed class InstrumentState(Instrument instrument)
    {
        public Instrument Instrument { get; } = instrument;
        public bool IsHistogram => Bounds is not null;

        /// <summary>Upper bounds of the buckets (ascending) for a histogram; null for counters and gauges.</summary>
        public double[]? Bounds { get; } = BucketsOf(instrument);
        public bool IsGauge { get; } = instrument is UpDownCounter<long> or UpDownCounter<int> or UpDownCounter<double>
            or ObservableGauge<long> or ObservableGauge<double> or ObservableUpDownCounter<long> or ObservableUpDownCounter<double>;

        /// <summary>Observable instruments report an absolute value when polled (stored, not added).</summary>
        public bool IsObservable { get; } = instrument.IsObservable;

        public ConcurrentDictionary<SeriesKey, Series> Series { get; } = new();

        /// <summary>The same series keyed by the identity of the tag objects (<see cref="ReferenceComparer"/>).</summary>
        public ConcurrentDictionary<SeriesKey, Series> ByReference { get; } = new(ReferenceComparer.Instance);

#pragma warning disable CA1051 // fields, so they can be updated with Interlocked / Volatile
        public int ByReferenceCount;

        /// <summary>The series of the instrument's last measurement (any thread's: a hint, checked by reference).</summary>
        public Series? Last;
#pragma warning restore CA1051

        private static double[]? BucketsOf(Instrument instrument)
        {
            double[]? advised = instrument switch
            {
                Histogram<double> h => h.Advice?.HistogramBucketBoundaries?.ToArray(),
                Histogram<long> h => h.Advice?.HistogramBucketBoundaries?.Select(static b => (double)b).ToArray(),
                Histogram<int> h => h.Advice?.HistogramBucketBoundaries?.Select(static b => (double)b).ToArray(),
                _ => null,
            };
            if (advised is { Length: > 0 })
            {
                return advised;
            }

            return instrument is Histogram<double> or Histogram<long> or Histogram<int> ? DefaultBuckets : null;
        }
    }

    private sealed class Series(SeriesKey key, int buckets)
    {
        private long _sumBits;
        private long _count;

        /// <summary>The key the series was made for (its tag objects: what <see cref="InstrumentState.Last"/> is compared with).</summary>
        public SeriesKey Key { get; } = key;

        public string[] Names { get; } = key.Names();
        public long[] Buckets { get; } = new long[buckets];
        public long Count => Volatile.Read(ref _count);
        public double Sum => BitConverter.Int64BitsToDouble(Volatile.Read(ref _sumBits));

        public void Set(double value)
        {
            Volatile.Write(ref _sumBits, BitConverter.DoubleToInt64Bits(value));
            Interlocked.Increment(ref _count);
        }

        public void Record(double value, double[]? bounds)
        {
            // Lock-free add of a double: compare-and-swap on its bits.
            long seen, next;
            do
            {
                seen = Volatile.Read(ref _sumBits);
                next = BitConverter.DoubleToInt64Bits(BitConverter.Int64BitsToDouble(seen) + value);
            }
            while (Interlocked.CompareExchange(ref _sumBits, next, seen) != seen);
            Interlocked.Increment(ref _count);
            if (bounds is null)
            {
                return;
            }

            var i = 0;
            while (i < bounds.Length && value > bounds[i])
            {
                i++;
            }

            Interlocked.Increment(ref Buckets[i]);
        }
    }

    /// <summary>
    /// Up to <see cref="MaxTags"/> tags, compared by name and value; built from the measurement's span without
    /// allocating (inline arrays, so looking up an existing series costs no allocation).
    /// </summary>
    private readonly struct SeriesKey : IEquatable<SeriesKey>
    {
        private readonly int _count;
        private readonly TagNames _names;
        private readonly TagValues _values;

        public SeriesKey(ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            _count = Math.Min(tags.Length, MaxTags);
            for (var i = 0; i < _count; i++)
            {
                _names[i] = tags[i].Key;
                _values[i] = tags[i].Value;
            }
        }

        public object? Value(int i) => _values[i];

        public string[] Names()
        {
            var names = new string[_count];
            for (var i = 0; i < _count; i++)
            {
                names[i] = _names[i]!;
            }

            return names;
        }

        public bool Equals(SeriesKey other)
        {
            if (_count != other._count)
            {
                return false;
            }

            for (var i = 0; i < _count; i++)
            {
                if (!string.Equals(_names[i], other._names[i], StringComparison.Ordinal) || !Equals(_values[i], other._values[i]))
                {
                    return false;
                }
            }

            return true;
        }

        public override bool Equals(object? obj) => obj is SeriesKey k && Equals(k);

        public bool ReferenceEquals(in SeriesKey other)
        {
            if (_count != other._count)
            {
                return false;
            }

            for (var i = 0; i < _count; i++)
            {
                if (!object.ReferenceEquals(_names[i], other._names[i]) || !object.ReferenceEquals(_values[i], other._values[i]))
                {
                    return false;
                }
            }

            return true;
        }

        public int ReferenceHashCode()
        {
            var hash = _count;
            for (var i = 0; i < _count; i++)
            {
                hash = (hash * 31) + System.Runtime.CompilerServices.RuntimeHelpers.GetHashCode(_values[i]);
            }

            return hash;
        }

        public override int GetHashCode()
        {
            // Values only: an instrument's tag names are almost always the same, so hashing them costs without
            // spreading the keys (Equals still compares names).
            var hash = new HashCode();
            hash.Add(_count);
            for (var i = 0; i < _count; i++)
            {
                hash.Add(_values[i]);
            }

            return hash.ToHashCode();
        }

        public override string ToString()
        {
            var sb = new StringBuilder();
            for (var i = 0; i < _count; i++)
            {
                sb.Append(_values[i]).Append('|');
            }

            return sb.ToString();
        }
    }

    /// <summary>
    /// Compares keys by the identity of their tag names and values, hashing object identities (no string hashing).
    /// Two keys equal here are equal by value too, so it can only miss, never confuse two series.
    /// </summary>
    private sealed class ReferenceComparer : IEqualityComparer<SeriesKey>
    {
        public static readonly ReferenceComparer Instance = new();

        public bool Equals(SeriesKey x, SeriesKey y) => x.ReferenceEquals(in y);

        public int GetHashCode(SeriesKey key) => key.ReferenceHashCode();
    }

    [System.Runtime.CompilerServices.InlineArray(MaxTags)]
    private struct TagNames
    {
        private string? _element;
    }

    [System.Runtime.CompilerServices.InlineArray(MaxTags)]
    private struct TagValues
    {
        private object? _element;
    }
}
