// The acn HTML report's own script: the per-video timeline (drawn from the JSON embedded in
// #timeline-data with Plotly.react, redrawn when the video picker changes) and the config
// table's "only what differs" switch. Plotly gives zoom (drag), pan and reset (double-click).
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("timeline-data").textContent);
  var picker = document.getElementById("video-picker");
  var plot = document.getElementById("timeline");

  function rowsOf(v) {
    // segment rows, top to bottom: ground truth, then each method
    return ["ground truth"].concat(data.methods);
  }

  function bars(name, items, colourOf, opacityOf, hoverOf, outlineOf) {
    return {
      type: "bar", orientation: "h", name: name, showlegend: false,
      y: items.map(function () { return name; }),
      base: items.map(function (d) { return d[0]; }),
      x: items.map(function (d) { return Math.max(d[1] - d[0], 0.05); }),
      width: 0.7,
      marker: {
        color: items.map(colourOf), opacity: items.map(opacityOf),
        line: { color: items.map(outlineOf), width: 1.5 }
      },
      hovertext: items.map(hoverOf), hoverinfo: "text", xaxis: "x", yaxis: "y"
    };
  }

  function traces(v) {
    var out = [];
    var cls = data.classes, col = data.colours;
    out.push(bars("ground truth", v.gt, function (g) { return col[g[2]]; },
      function () { return 0.9; },
      function (g) { return "ground truth: " + cls[g[2]] + " " + g[0] + "-" + g[1] + " s"; },
      function () { return "rgba(0,0,0,0)"; }));
    data.methods.forEach(function (m, i) {
      var dets = v.dets[i] || [];
      out.push(bars(m, dets, function (d) { return col[d[2]]; },
        function (d) { return d[4]; },
        function (d) {
          return m + ": " + cls[d[2]] + " " + d[0] + "-" + d[1] + " s, score " + d[3] +
            ", " + data.kinds[d[5]];
        },
        function (d) { return d[5] === 0 ? "#000000" : "rgba(0,0,0,0)"; }));
    });
    // a legend entry per class on this video's segment rows (the bars carry no legend)
    var seen = {};
    v.gt.forEach(function (g) { seen[g[2]] = true; });
    v.dets.forEach(function (rows) { rows.forEach(function (d) { seen[d[2]] = true; }); });
    Object.keys(seen).slice(0, 12).forEach(function (c) {
      out.push({
        type: "scatter", mode: "markers", x: [null], y: [null], xaxis: "x", yaxis: "y",
        marker: { symbol: "square", size: 12, color: col[+c] }, name: cls[+c],
        legendgroup: "classes", legendgrouptitle: { text: "classes" }
      });
    });
    if (v.scp) {
      var streams = Object.keys(v.scp);
      streams.forEach(function (s, k) {
        Object.keys(v.scp[s]).forEach(function (c) {
          var y = v.scp[s][c];
          out.push({
            type: "scatter", mode: "lines", line: { shape: "hv", color: col[+c], width: 1.5 },
            x: y.map(function (_, j) { return j * v.dt; }), y: y,
            name: s + " SCP " + cls[+c], legendgroup: cls[+c], xaxis: "x", yaxis: "y" + (k + 2)
          });
        });
      });
      streams.forEach(function (s) {
        var y = v.att[s];
        out.push({
          type: "scatter", mode: "lines", line: { shape: "hv", color: data.stream_colours[s] || "#333", width: 1.2 },
          x: y.map(function (_, j) { return j * v.dt; }), y: y, name: s + " attention",
          xaxis: "x", yaxis: "y" + (streams.length + 2)
        });
        if (data.thresholds[s] !== undefined) {
          out.push({
            type: "scatter", mode: "lines", line: { dash: "dash", color: data.stream_colours[s] || "#333", width: 1 },
            x: [0, v.duration], y: [data.thresholds[s], data.thresholds[s]],
            name: s + " attention threshold", xaxis: "x", yaxis: "y" + (streams.length + 2)
          });
        }
      });
    }
    return out;
  }

  function layout(v) {
    var rows = rowsOf(v);
    var streams = v.scp ? Object.keys(v.scp) : [];
    var panels = streams.length ? streams.length + 1 : 0;  // SCP per stream + attention
    var segH = 40 + 26 * rows.length, panelH = 150;
    var height = 90 + segH + panels * panelH + 60;
    var lay = {
      title: { text: v.id + " (" + v.duration + " s) - ground truth: " +
        (v.labels.length ? v.labels.join(", ") : "none"), x: 0.01, xanchor: "left" },
      // room on the left for the longest row name (about 7 px a character)
      height: height, barmode: "overlay",
      margin: { l: Math.max(110, 12 + 7 * Math.max.apply(null, rows.map(function (r) { return r.length; }))),
                r: 20, t: 50, b: 50 },
      template: "plotly_white", hovermode: "closest", dragmode: "zoom",
      legend: { orientation: "h", y: -0.11, yanchor: "top" },
      xaxis: { range: [0, v.duration], title: { text: "seconds" }, anchor: "y" + (panels ? panels + 1 : "") }
    };
    var usable = height - 110;
    var top = 1, gap = 0.03;
    var segFrac = segH / usable;
    lay.yaxis = {
      domain: [Math.max(top - segFrac, 0), top], type: "category",
      categoryorder: "array", categoryarray: rows.slice().reverse(), fixedrange: true
    };
    top = top - segFrac - gap;
    var pFrac = panels ? (top - 0) / panels : 0;
    streams.forEach(function (s, k) {
      lay["yaxis" + (k + 2)] = {
        domain: [Math.max(top - pFrac + gap, 0), top], range: [0, 1.05],
        title: { text: s + " SCP" }, fixedrange: true
      };
      top -= pFrac;
    });
    if (panels) {
      lay["yaxis" + (streams.length + 2)] = {
        domain: [0, Math.max(top, 0.05)], title: { text: "attention" }, fixedrange: true
      };
    }
    return lay;
  }

  function draw() {
    var v = data.videos[+picker.value];
    Plotly.react(plot, traces(v), layout(v), { responsive: true, displaylogo: false });
    document.getElementById("video-position").textContent =
      (+picker.value + 1) + " / " + data.videos.length;
  }

  picker.addEventListener("change", draw);
  document.getElementById("video-prev").addEventListener("click", function () {
    picker.value = String(Math.max(0, +picker.value - 1)); draw();
  });
  document.getElementById("video-next").addEventListener("click", function () {
    picker.value = String(Math.min(data.videos.length - 1, +picker.value + 1)); draw();
  });
  if (data.videos.length) { draw(); }

  var onlyDiff = document.getElementById("config-only-diff");
  if (onlyDiff) {
    var table = document.getElementById("config-table");
    var apply = function () { table.classList.toggle("only-diff", onlyDiff.checked); };
    onlyDiff.addEventListener("change", apply);
    apply();
  }
})();
