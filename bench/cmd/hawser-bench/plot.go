package main

import (
	"fmt"
	"image/color"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

var (
	p50Color = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	p99Color = color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}
)

// plotRPC draws one panel per (size, concurrency, GOMAXPROCS) point, each on its own
// scale: p50 and p99 latency for every implementation, side by side.
func plotRPC(path string, rows []any) error {
	type point struct {
		title string
		rows  []*rpcRow
	}
	var points []*point
	for _, r := range rows {
		x := r.(*rpcRow)
		title := fmt.Sprintf("%s, %d B, %d caller(s), GOMAXPROCS %d: latency in µs (lower is better)",
			x.Scenario, x.Size, x.Conc, x.GOMAXPROCS)
		if len(points) == 0 || points[len(points)-1].title != title {
			points = append(points, &point{title: title})
		}
		pt := points[len(points)-1]
		pt.rows = append(pt.rows, x)
	}
	panels := make([][]*plot.Plot, len(points))
	for i, pt := range points {
		p := plot.New()
		p.Title.Text = pt.title
		names := make([]string, len(pt.rows))
		p50s := make(plotter.Values, len(pt.rows))
		p99s := make(plotter.Values, len(pt.rows))
		for j, r := range pt.rows {
			names[j], p50s[j], p99s[j] = r.Impl, r.P50, r.P99
		}
		w := vg.Points(18)
		for k, s := range []struct {
			name string
			vals plotter.Values
			c    color.Color
		}{{"p50", p50s, p50Color}, {"p99", p99s, p99Color}} {
			bars, err := plotter.NewBarChart(s.vals, w)
			if err != nil {
				return err
			}
			bars.Color = s.c
			bars.LineStyle.Width = 0
			bars.Offset = w * vg.Length(float64(k)-0.5)
			p.Add(bars)
			p.Legend.Add(s.name, bars)
		}
		p.Legend.Top = true
		p.Legend.Left = true
		p.Y.Min = 0
		p.Y.Max *= 1.25 // room for the legend
		p.NominalX(names...)
		panels[i] = []*plot.Plot{p}
	}
	width, height := 8*vg.Inch, vg.Length(len(points))*3*vg.Inch
	var canvas vg.CanvasSizer
	var save func() error
	if strings.HasSuffix(path, ".svg") {
		sv := vgsvg.New(width, height)
		canvas, save = sv, func() error { return writeTo(path, sv) }
	} else {
		img := vgimg.New(width, height)
		canvas, save = img, func() error { return writeTo(path, vgimg.PngCanvas{Canvas: img}) }
	}
	tiles := draw.Tiles{Rows: len(points), Cols: 1, PadTop: vg.Points(8), PadBottom: vg.Points(8), PadX: vg.Points(8), PadY: vg.Points(16)}
	canvases := plot.Align(panels, tiles, draw.New(canvas))
	for i := range panels {
		panels[i][0].Draw(canvases[i][0])
	}
	return save()
}
