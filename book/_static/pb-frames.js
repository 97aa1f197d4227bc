/* Interactive figures of the book (pullback_utils.chapters.frames): pre-rendered frames and a control.
 *
 * A <figure class="pb-frames"> holds the first frame as its image and, in its caption's legend, a hidden
 * <div class="pb-frames-controls"> (a <label>, an <input type="range"> or a <select> with the frame labels
 * as JSON in data-labels, and an <output>) and the other frames as <img class="pb-frame"> (hidden by
 * pb-frames.css). This script moves the control under the image, shows it, and on every change sets the
 * image's src and alt to those of the chosen frame. Without JavaScript the first frame shows. No network,
 * no kernel.
 */
(function () {
  "use strict";

  function wire(figure) {
    var controls = figure.querySelector(".pb-frames-controls");
    var input = controls && controls.querySelector("input, select");
    var images = figure.querySelectorAll("img");
    if (!input || images.length < 2 || figure.dataset.pbFramesWired) return;
    var main = images[0];
    var frames = [{src: main.src, alt: main.alt}];
    for (var i = 1; i < images.length; i++) {
      if (images[i].classList.contains("pb-frame")) frames.push({src: images[i].src, alt: images[i].alt});
    }
    var labels;
    try { labels = JSON.parse(input.getAttribute("data-labels") || "[]"); } catch (e) { labels = []; }
    var output = controls.querySelector("output");

    function show() {
      var k = Math.max(0, Math.min(frames.length - 1, parseInt(input.value, 10) || 0));
      main.src = frames[k].src;
      main.alt = frames[k].alt;
      var text = labels[k] !== undefined ? String(labels[k]) : String(k + 1);
      if (output) output.textContent = text;
      if (input.type === "range") input.setAttribute("aria-valuetext", text);
      figure.dataset.frame = String(k);
    }

    main.insertAdjacentElement("afterend", controls);
    controls.hidden = false;
    input.addEventListener("input", show);
    input.addEventListener("change", show);
    figure.dataset.pbFramesWired = "1";
    show();
  }

  function wireAll() {
    var figures = document.querySelectorAll("figure.pb-frames");
    for (var i = 0; i < figures.length; i++) wire(figures[i]);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", wireAll);
  else wireAll();
})();
