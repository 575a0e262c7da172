% Reference for tests/test_metrics.py: the EMOTIC eval.m average precision,
% run in GNU Octave on the inputs of eval_m_octave.json.
%
% Written for this project from the protocol in shared/EMOTIC_FORMAT.md (the
% dataset authors' demoComputeAP): per category, save the RNG state, seed
% rand('state', 0), add rand(size(scores)) * 1e-10, restore the state; sort in
% descending order; precision and recall in percent; VOC envelope; sum of
% delta-recall x precision over the recall steps. Recall and precision are in
% percent, so the sum divided by 100^2 is the AP fraction this package reports.
%
% Run:  octave-cli --eval "eval_m_ap('in.csv', 'out.csv')"
% in.csv: N rows of K scores followed by K labels; out.csv: K APs.
function eval_m_ap(in_file, out_file)
  data = csvread(in_file);
  k = size(data, 2) / 2;
  ap = zeros(1, k);
  for c = 1:k
    ap(c) = compute_ap(data(:, c), data(:, k + c));
  end
  fid = fopen(out_file, 'w');
  fprintf(fid, '%.17g\n', ap);
  fclose(fid);
end

function ap = compute_ap(scores, labels)
  scores = double(scores);
  saved = rand('state');
  rand('state', 0);
  scores = scores + rand(size(scores)) * 1e-10;
  rand('state', saved);
  [~, idx] = sort(scores, 'descend');
  tp = labels(idx) > 0;
  fp = labels(idx) <= 0;
  tp = cumsum(tp);
  fp = cumsum(fp);
  rec = 100 * tp / sum(labels > 0);
  prec = 100 * tp ./ (tp + fp);
  mrec = [0; rec; 100];
  mpre = [0; prec; 0];
  for i = numel(mpre) - 1:-1:1
    mpre(i) = max(mpre(i), mpre(i + 1));
  end
  i = find(mrec(2:end) ~= mrec(1:end - 1)) + 1;
  ap = sum((mrec(i) - mrec(i - 1)) .* mpre(i)) / 1e4;
end
