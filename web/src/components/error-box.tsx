/** An error shown where it happened, in words, with a way to try again. */
export function ErrorBox({ error, retry }: { error: string | null; retry?: () => void }) {
  if (!error) return null;
  return (
    <div className="error" role="alert">
      <span>{error}</span>
      {retry ? <button type="button" className="link" onClick={retry}>Try again</button> : null}
    </div>
  );
}
